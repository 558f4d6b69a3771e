"""OrthancService component (STUB — being implemented)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import pulumi

from components.config import StackConfig


@dataclass
class OrthancServiceArgs:
    config: StackConfig
    vpc_id: pulumi.Input[str]
    vpc_cidr: pulumi.Input[str]
    public_subnet_ids: pulumi.Input[list]
    private_subnet_ids: pulumi.Input[list]
    kms_key_arn: pulumi.Input[str]
    tags: dict[str, str] = field(default_factory=dict)


class OrthancService(pulumi.ComponentResource):
    def __init__(self, name: str, args: OrthancServiceArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("dicom-annotate:orthanc:OrthancService", name, None, opts)
        o = pulumi.Output.from_input
        self.url = o("http://stub")
        self.internal_url = o("http://orthanc.internal:8042")
        self.admin_secret_arn = o("arn:aws:secretsmanager:us-east-1:123456789012:secret:stub")
        self.dicom_endpoint = o("")
        self.storage_bucket_name = o("stub-bucket")
        self.db_address = o("stub.rds")
        self.cluster_name = o("stub-cluster")
        self.cluster_arn = o("arn:aws:ecs:us-east-1:123456789012:cluster/stub")
        self.client_security_group_id = o("sg-stub")
        self.register_outputs({"url": self.url})
