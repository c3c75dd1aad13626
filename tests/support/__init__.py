"""Test support: real local servers (Orthanc, ...) the test suites start."""
