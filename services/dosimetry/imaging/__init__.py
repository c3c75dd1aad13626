"""DICOM and DICOMweb I/O of the dosimetry service: fetch a SPECT/PET + CT study, build the
activity volume in patient coordinates, resample CT and VOIs onto it, run the voxel dose
engine and store the dose map back as RT Dose. Not part of ``domain/`` (it does I/O)."""
