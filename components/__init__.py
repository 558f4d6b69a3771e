"""Pulumi ComponentResources of dicom-annotate, the typed stack config and the policy rules."""
