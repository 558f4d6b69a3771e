"""LabelingBundle component (STUB — being implemented)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import pulumi

from components.config import StackConfig


@dataclass
class LabelingBundleArgs:
    config: StackConfig
    vpc_id: pulumi.Input[str]
    private_subnet_ids: pulumi.Input[list]
    orthanc_url: pulumi.Input[str]
    orthanc_secret_arn: pulumi.Input[str]
    orthanc_client_security_group_id: pulumi.Input[str]
    kms_key_arn: pulumi.Input[str]
    prelabel_code: pulumi.Archive
    postlabel_code: pulumi.Archive
    dependency_layer: pulumi.Archive
    tags: dict[str, str] = field(default_factory=dict)


class LabelingBundle(pulumi.ComponentResource):
    def __init__(self, name: str, args: LabelingBundleArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("dicom-annotate:labeling:LabelingBundle", name, None, opts)
        o = pulumi.Output.from_input
        self.annotation_bucket_name = o("stub")
        self.ground_truth_role_arn = o("arn:aws:iam::123456789012:role/stub")
        self.sagemaker_execution_role_arn = o("arn:aws:iam::123456789012:role/stub2")
        self.prelabel_function_arn = o("arn:aws:lambda:us-east-1:123456789012:function:stub")
        self.postlabel_function_arn = o("arn:aws:lambda:us-east-1:123456789012:function:stub2")
        self.template_s3_uri = o("s3://stub/template.liquid.html")
        self.notebook_instance_name = o("stub")
        self.register_outputs({})
