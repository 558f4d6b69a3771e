"""dicom-annotate — the Pulumi program: read and validate the stack config, wire the components.

Components declare resources; this file only connects their outputs to each other's inputs and
exports what a user needs (no secret values).
"""

import pulumi

from components import ground_truth, orthanc as orthanc_module
from components.config import load_stack_config
from components.ground_truth import GroundTruth, GroundTruthArgs
from components.moved import top_level_urn
from components.names import check_generated_names
from components.network import Network, NetworkArgs
from components.notebook import TrainingNotebook, TrainingNotebookArgs
from components.orthanc import OrthancService, OrthancServiceArgs
from components.packaging import dependency_layer_archive, lambda_archive
from components.platform import Platform, PlatformArgs
from components.portal import Portal, PortalArgs, portal_db_pool_size
from components.storage import KmsKey, KmsKeyArgs

config = load_stack_config()
# The portal's share of the database's connections; too small a share stops here, before anything
# is declared.
portal_pool_size = portal_db_pool_size(config) if config.portal_enabled else None
# Every generated name is checked against its AWS limit for this stack name, at preview.
pulumi.runtime.register_stack_transformation(check_generated_names)
stack = pulumi.get_stack()
prefix = f"da-{stack}"
tags = {"project": "dicom-annotate", "stack": stack, **config.tags}

key = KmsKey(
    f"{prefix}-data",
    KmsKeyArgs(
        description=f"dicom-annotate {stack}: DICOM storage, database, secrets, logs, annotations",
        cloudwatch_logs=True,
        deletion_window_days=config.retention.key_deletion_days,
        tags=tags,
    ),
)

network = Network(
    f"{prefix}-net",
    NetworkArgs(
        cidr=config.vpc_cidr,
        nat_gateways=config.nat_gateways,
        interface_endpoints=config.interface_endpoints,
        flow_logs=config.flow_logs,
        log_retention_days=config.log_retention_days,
        kms_key_arn=key.arn,
        vpc_id=config.vpc_id,
        s3_gateway_endpoint=config.s3_gateway_endpoint,
        interface_endpoint_private_dns=config.interface_endpoint_private_dns,
        public_subnet_ids=list(config.public_subnet_ids),
        private_subnet_ids=list(config.private_subnet_ids),
        tags=tags,
    ),
)

# Cluster, ALB and database server that Orthanc and the portal share. Their names and an alias
# keep them where the Orthanc component put them before the platform was its own piece.
platform = Platform(
    f"{prefix}-platform",
    PlatformArgs(
        vpc_id=network.vpc_id,
        public_subnet_ids=network.public_subnet_ids,
        private_subnet_ids=network.private_subnet_ids,
        kms_key_arn=key.arn,
        certificate_arn=config.certificate_arn,
        alb_ingress_cidrs=config.alb_ingress_cidrs,
        default_target=orthanc_module.DEFAULT_TARGET,
        database=orthanc_module.database_settings(
            engine_version=config.db_engine_version,
            instance_class=config.db_instance_class,
            allocated_storage_gb=config.db_allocated_storage_gb,
            max_allocated_storage_gb=config.db_max_allocated_storage_gb,
            multi_az=config.db_multi_az,
            backup_retention_days=config.db_backup_retention_days,
            max_connections=config.db_max_connections,
        ),
        prod=config.prod,
        deletion_protection=config.deletion_protection,
        log_retention_days=config.log_retention_days,
        name_prefix=f"{prefix}-orthanc",
        moved_from_urn=top_level_urn(orthanc_module.TYPE, f"{prefix}-orthanc"),
        tags=tags,
    ),
)

orthanc = OrthancService(
    f"{prefix}-orthanc",
    OrthancServiceArgs(
        platform=platform,
        vpc_id=network.vpc_id,
        private_subnet_ids=network.private_subnet_ids,
        public_subnet_ids=network.public_subnet_ids,
        kms_key_arn=key.arn,
        image=config.orthanc_image,
        size=config.orthanc_size,
        region=config.region,
        log_retention_days=config.log_retention_days,
        prod=config.prod,
        dicom_nlb=config.dicom_nlb,
        dicom_allowed_cidrs=config.dicom_allowed_cidrs,
        tags=tags,
    ),
)

# The Ground Truth backend; the component was the LabelingBundle (with the notebook) and keeps its
# name and an alias to that type, so its resources keep their URNs.
labeling = GroundTruth(
    f"{prefix}-labeling",
    GroundTruthArgs(
        vpc_id=network.vpc_id,
        private_subnet_ids=network.private_subnet_ids,
        orthanc=orthanc.access,
        kms_key_arn=key.arn,
        prelabel_code=lambda_archive("prelabel"),
        postlabel_code=lambda_archive("postlabel"),
        dependency_layer=dependency_layer_archive(),
        worker_origins=config.gt_worker_origins,
        prod=config.prod,
        log_retention_days=config.log_retention_days,
        lambda_memory_mb=config.lambda_memory_mb,
        lambda_timeout_s=config.lambda_timeout_s,
        deidentify=config.deidentify,
        viewer_assets_domain=config.viewer_assets_domain,
        viewer_assets_certificate_arn=config.viewer_assets_certificate_arn,
        tags=tags,
    ),
)

notebook = TrainingNotebook(
    f"{prefix}-labeling",
    TrainingNotebookArgs(
        vpc_id=network.vpc_id,
        private_subnet_ids=network.private_subnet_ids,
        kms_key_arn=key.arn,
        annotation_bucket_id=labeling.annotation_bucket_id,
        annotation_bucket_name=labeling.annotation_bucket_name,
        annotation_bucket_arn=labeling.annotation_bucket_arn,
        instance_type=config.notebook_instance_type,
        idle_minutes=config.notebook_idle_minutes,
        volume_gb=config.notebook_volume_gb,
        moved_from_urn=top_level_urn(ground_truth.FORMER_TYPE, f"{prefix}-labeling"),
        tags=tags,
    ),
)

# The labeling portal needs the ALB's HTTPS listener (Cognito sign-in); config refuses it otherwise.
portal = None
if config.portal_enabled:
    portal = Portal(
        f"{prefix}-portal",
        PortalArgs(
            platform=platform,
            vpc_id=network.vpc_id,
            private_subnet_ids=network.private_subnet_ids,
            kms_key_arn=key.arn,
            orthanc=orthanc.access,
            salt_secret_arn=labeling.salt_secret_arn,
            annotation_bucket_name=labeling.annotation_bucket_name,
            annotation_bucket_arn=labeling.annotation_bucket_arn,
            dependency_layer_arn=labeling.dependency_layer_arn,
            size=config.portal_size,
            region=config.region,
            prod=config.prod,
            log_retention_days=config.log_retention_days,
            deidentify=config.deidentify,
            domain=config.portal_domain,
            mfa_required=config.portal_mfa == "required",
            cognito_domain_prefix=config.cognito_domain_prefix,
            db_pool_size=portal_pool_size,
            tags=tags,
        ),
    )

pulumi.export("environment", config.environment)
pulumi.export("vpcId", network.vpc_id)
pulumi.export("orthancUrl", orthanc.url)
pulumi.export("orthancInternalUrl", orthanc.internal_url)
pulumi.export("orthancAdminSecretArn", orthanc.admin_secret_arn)
pulumi.export("dicomEndpoint", orthanc.dicom_endpoint)
pulumi.export("storageBucket", orthanc.storage_bucket_name)
pulumi.export("databaseEndpoint", platform.db_address)
pulumi.export("ecsClusterName", platform.cluster_name)
pulumi.export("annotationBucket", labeling.annotation_bucket_name)
pulumi.export("groundTruthRoleArn", labeling.ground_truth_role_arn)
pulumi.export("sagemakerExecutionRoleArn", notebook.sagemaker_execution_role_arn)
pulumi.export("prelabelLambdaArn", labeling.prelabel_function_arn)
pulumi.export("postlabelLambdaArn", labeling.postlabel_function_arn)
pulumi.export("workerTemplateS3Uri", labeling.template_s3_uri)
pulumi.export("viewerAssetsUrl", labeling.viewer_assets_url)
pulumi.export("notebookInstanceName", notebook.notebook_instance_name)
pulumi.export("kmsKeyArn", key.arn)
if portal is not None:
    pulumi.export("portalUrl", portal.url)
    pulumi.export("portalUserPoolId", portal.user_pool_id)
    pulumi.export("portalSignInDomain", portal.sign_in_domain)
    pulumi.export("portalRepositoryUrl", portal.repository_url)
    pulumi.export("portalDatabaseSecretArn", portal.db_secret_arn)
