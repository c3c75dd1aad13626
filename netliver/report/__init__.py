"""What people read: one patient's case gathered from the FHIR API, its figures and tables.

``case`` turns the stored results (eligibility Observations, SIRT plans, voxel-dosimetry
reports, tumour-response Observations, markers, CTCAE grades) into typed rows; ``plots`` draws
them; ``fetch`` reads them through any FHIR reader (the gateway's store, or HTTP). Nothing here
computes a clinical result: every number shown is one the services wrote.
"""
