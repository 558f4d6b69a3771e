"""DICOM in and out: de-identification (PS3.15 E), Structured Report write-back (TID 1500) and
series geometry and ordering (PS3.3 C.7.6.2).
"""
