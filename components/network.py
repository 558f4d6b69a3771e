"""Network component (STUB — being implemented)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

import pulumi


@dataclass
class NetworkArgs:
    cidr: str
    nat_gateways: str                      # single | one-per-az | none
    interface_endpoints: bool
    flow_logs: bool
    log_retention_days: int
    kms_key_arn: pulumi.Input[str]
    vpc_id: Optional[str] = None           # bring-your-own VPC when set
    public_subnet_ids: Sequence[str] = ()
    private_subnet_ids: Sequence[str] = ()
    tags: dict[str, str] = field(default_factory=dict)


class Network(pulumi.ComponentResource):
    def __init__(self, name: str, args: NetworkArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("dicom-annotate:network:Network", name, None, opts)
        self.vpc_id = pulumi.Output.from_input("vpc-0123456789abcdef0")
        self.vpc_cidr = pulumi.Output.from_input(args.cidr)
        self.public_subnet_ids = pulumi.Output.from_input(["subnet-0a", "subnet-0b"])
        self.private_subnet_ids = pulumi.Output.from_input(["subnet-0c", "subnet-0d"])
        self.register_outputs({"vpc_id": self.vpc_id})
