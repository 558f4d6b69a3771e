"""The GT Lambdas' environment names, defined once: read by :meth:`labeling.gt.prelabel.PrelabelSettings.from_env`
and written by :mod:`components.ground_truth` (both functions' ``environment``). Import-light on purpose (no
pydicom, boto3 or highdicom): the Pulumi program imports it."""

ORTHANC_URL = "ORTHANC_URL"
ORTHANC_SECRET_ARN = "ORTHANC_SECRET_ARN"  # the secret's ARN; the credentials are read from Secrets Manager
STAGING_BUCKET = "STAGING_BUCKET"
STAGING_KMS_KEY_ID = "STAGING_KMS_KEY_ID"
DEIDENTIFY = "DEIDENTIFY"
DEIDENTIFY_SALT = "DEIDENTIFY_SALT"  # local runs only; in AWS the salt is its own secret:
DEIDENTIFY_SALT_SECRET_ARN = "DEIDENTIFY_SALT_SECRET_ARN"
POWERTOOLS_SERVICE_NAME = "POWERTOOLS_SERVICE_NAME"  # read by aws-lambda-powertools' Logger (the layer)

# Every name above (a test checks that the component sets only these and that the settings read them).
ALL = frozenset(value for key, value in dict(globals()).items() if key.isupper())
