"""The netliver services: eligibility, dosimetry, response (each imports none of the others)."""
