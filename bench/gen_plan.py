#!/usr/bin/env python3
"""Generate a realistic, deterministic Terraform plan JSON for benchmarking Waiver.

Usage:
    gen_plan.py N OUT.json [--seed S] [--stats STATS.json] [--quiet]

The output imitates `terraform show -json PLANFILE` (format_version "1.2", as
written by Terraform 1.6): compact single-line JSON with variables,
planned_values (root_module + nested child_modules), resource_changes,
output_changes, prior_state (for resources that already exist), configuration,
timestamp, applyable, complete and errored.

N is the exact number of entries in resource_changes (managed resources and a
few deferred data sources). The same N and seed always give a byte-identical
file. Only the standard library is used.

Memory stays bounded: planned_values is streamed straight to OUT while
resource_changes go to a temporary file that is appended afterwards; only the
(much smaller) prior_state and configuration are kept in memory. OUT is
written under a temporary name and renamed at the end, so a half-written file
is never left at OUT.

Mix of the estate (share of resource_changes, roughly):
  aws_instance 28%, aws_ebs_volume 15%, aws_security_group 14%,
  aws_s3_bucket 11%, aws_iam_policy 9%, aws_s3_bucket_public_access_block 8%,
  aws_subnet 6%, aws_db_instance 5%, aws_vpc 1.5%, data sources 2%;
  ~30% of instances sit in modules (module.app_7, module.app_7.module.db,
  module.svc["payments"], module.worker[2]).
Deliberate policy violations (counted in the summary printed to stderr):
  ~10% of aws_instance have a non-approved instance_type (m5.4xlarge, ...),
  ~5% of aws_instance have a badly formed Name tag ("WebServer12"),
  ~3% of aws_security_group allow port 22 from 0.0.0.0/0 (or ::/0).
"""

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
import time

PROVIDER = "registry.terraform.io/hashicorp/aws"
TF_VERSION = "1.6.6"
TIMESTAMP = "2024-05-01T12:00:00Z"  # fixed so that output is deterministic

APPROVED_INSTANCE_TYPES = [
    "t3.micro", "t3.small", "t3.medium", "t3.large",
    "m5.large", "m5.xlarge", "c5.large", "c5.xlarge", "r5.large",
]
NON_APPROVED_INSTANCE_TYPES = [
    "m5.4xlarge", "m5.8xlarge", "c5.9xlarge", "r5.8xlarge", "p3.2xlarge", "x1.16xlarge",
]
DB_CLASSES = ["db.t3.micro", "db.t3.medium", "db.m5.large", "db.r5.large", "db.r5.xlarge"]
TEAMS = ["payments", "search", "core", "data", "identity", "platform", "growth", "ml", "ops", "billing"]
ENVS = ["prod", "prod", "staging", "dev"]
ROLES = ["web", "api", "worker", "batch", "cache", "queue", "frontend", "backend",
         "ingest", "etl", "auth", "reports", "gateway", "admin", "cron", "proxy"]
REGION = "eu-west-1"
AZS = ["eu-west-1a", "eu-west-1b", "eu-west-1c"]
ACCOUNT = "123456789012"
SVC_KEYS = ["payments", "checkout", "catalog", "search", "accounts", "ledger",
            "notifications", "inventory", "shipping", "pricing", "reviews", "media"]
FOREACH_KEYS = {
    "aws_subnet": AZS,
    "aws_s3_bucket": ["logs", "assets", "backups", "artifacts", "exports", "uploads"],
    "aws_s3_bucket_public_access_block": ["logs", "assets", "backups", "artifacts", "exports", "uploads"],
    "aws_iam_policy": ["read", "write", "admin", "deploy", "audit"],
    "aws_security_group": ["web", "app", "db", "lb", "bastion"],
    "aws_ebs_volume": ["data", "logs", "scratch", "wal"],
}
DEFAULT_FOREACH_KEYS = ["blue", "green", "canary", "eu-west-1", "us-east-1"]

# Instance-weighted type mix, per kind of module.
ROOT_MIX = [
    ("managed", "aws_instance", 24), ("managed", "aws_ebs_volume", 14),
    ("managed", "aws_security_group", 12), ("managed", "aws_s3_bucket", 11),
    ("managed", "aws_s3_bucket_public_access_block", 8), ("managed", "aws_iam_policy", 8),
    ("managed", "aws_subnet", 8), ("managed", "aws_db_instance", 5), ("managed", "aws_vpc", 2),
    ("data", "aws_iam_policy_document", 2), ("data", "aws_ami", 1),
]
APP_MIX = [
    ("managed", "aws_instance", 35), ("managed", "aws_ebs_volume", 18),
    ("managed", "aws_security_group", 14), ("managed", "aws_s3_bucket", 10),
    ("managed", "aws_s3_bucket_public_access_block", 6), ("managed", "aws_iam_policy", 10),
    ("data", "aws_iam_policy_document", 3), ("data", "aws_ami", 2),
]
DB_MIX = [
    ("managed", "aws_db_instance", 40), ("managed", "aws_security_group", 30),
    ("managed", "aws_subnet", 20), ("managed", "aws_iam_policy", 10),
]

SCHEMA_VERSION = {"aws_instance": 1, "aws_db_instance": 2}

# attribute that forces replacement, used for ["delete","create"] changes
REPLACE_ATTR = {
    "aws_instance": "ami", "aws_security_group": "name", "aws_s3_bucket": "bucket",
    "aws_s3_bucket_public_access_block": "bucket", "aws_db_instance": "engine",
    "aws_ebs_volume": "availability_zone", "aws_iam_policy": "name",
    "aws_subnet": "cidr_block", "aws_vpc": "cidr_block",
}


def dumps(obj):
    # Terraform writes compact JSON; json.dumps (unlike json.dump) uses the C encoder.
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def sdumps(obj):
    # object values inside plans come from cty, which writes keys in sorted order
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, sort_keys=True)


def mirror(v):
    """Structure mirror used by Terraform for after_unknown / after_sensitive.

    Objects keep only keys whose value is a (non-null) container, lists keep
    their length with scalar elements turned into false, null becomes false.
    """
    if isinstance(v, dict):
        return {k: mirror(x) for k, x in v.items() if isinstance(x, (dict, list))}
    if isinstance(v, list):
        return [mirror(x) if isinstance(x, (dict, list)) else False for x in v]
    return False


def overlay(base, ov):
    """Merge an overlay of `true` leaves (possibly nested) into a mirror."""
    for k, o in ov.items():
        if o is True:
            base[k] = True
        elif isinstance(o, dict):
            sub = base.get(k)
            if not isinstance(sub, dict):
                sub = base[k] = {}
            overlay(sub, o)
        elif isinstance(o, list):
            sub = base.get(k)
            if not isinstance(sub, list):
                sub = base[k] = [{} for _ in o]
            for i, e in enumerate(o):
                if e is True:
                    sub[i] = True
                elif isinstance(e, dict):
                    if not isinstance(sub[i], dict):
                        sub[i] = {}
                    overlay(sub[i], e)
    return base


def copy_json(v):
    if isinstance(v, dict):
        return {k: copy_json(x) for k, x in v.items()}
    if isinstance(v, list):
        return [copy_json(x) for x in v]
    return v


class Res:
    """One generated instance: known values, unknown/sensitive overlays, references."""
    __slots__ = ("after", "unknown", "sensitive", "refs")

    def __init__(self, after, unknown=None, sensitive=None, refs=None):
        self.after = after
        self.unknown = unknown or {}
        self.sensitive = sensitive or {}
        self.refs = refs or {}


class Gen:
    def __init__(self, seed):
        self.rng = random.Random(seed)
        self.num = 0
        self.stats = {
            "resource_changes": 0, "by_type": {}, "by_action": {}, "in_modules": 0,
            "modules": 0,
            "violations": {
                "aws_instance_non_approved_type": 0, "aws_instance_bad_name": 0,
                "aws_security_group_ssh_open_to_world": 0,
                "aws_ebs_volume_unencrypted": 0, "aws_db_instance_unencrypted": 0,
                "aws_db_instance_public": 0, "aws_s3_bucket_public_acl": 0,
                "aws_iam_policy_admin_star": 0,
            },
            "aws_instance_root_block_device_unknown": 0,
        }

    def viol(self, key):
        self.stats["violations"][key] += 1

    def hexid(self, n=17):
        return "%0*x" % (n, self.rng.getrandbits(4 * n))

    def next_num(self):
        self.num += 1
        return self.num

    def ip(self, prefix="10"):
        r = self.rng
        return "%s.%d.%d.%d" % (prefix, r.randint(0, 255), r.randint(0, 255), r.randint(1, 254))

    def tags(self, ctx, role, name=None):
        r = self.rng
        t = {
            "Name": name or "%s-%s-%s-%d" % (ctx["team"], ctx["env"], role, self.next_num()),
            "environment": ctx["env"],
            "Team": ctx["team"],
            "ManagedBy": "terraform",
        }
        if r.random() < 0.97:
            t["owner"] = "%s@example.com" % ctx["team"]
        if r.random() < 0.6:
            t["CostCenter"] = "cc-%04d" % r.randint(1000, 1099)
        return t

    # ------------------------------------------------------------------ managed

    def aws_instance(self, ctx, role, existing):
        r = self.rng
        if r.random() < 0.10:
            itype = r.choice(NON_APPROVED_INSTANCE_TYPES)
            self.viol("aws_instance_non_approved_type")
        else:
            itype = r.choice(APPROVED_INSTANCE_TYPES)
        n = self.next_num()
        if r.random() < 0.05:
            name = "%sServer%d" % (role.capitalize(), n)
            self.viol("aws_instance_bad_name")
        else:
            name = "%s-%s-%s-%d" % (ctx["team"], ctx["env"], role, n)
        tags = self.tags(ctx, role, name)
        ami_known = r.random() < 0.3
        ami = "ami-0%s" % self.hexid(16)
        rbd_unknown = r.random() < 0.04
        after = {
            "credit_specification": [],
            "disable_api_stop": False,
            "disable_api_termination": ctx["env"] == "prod",
            "get_password_data": False,
            "hibernation": None,
            "iam_instance_profile": ("%s-%s-profile" % (ctx["team"], role)) if r.random() < 0.7 else None,
            "instance_type": itype,
            "key_name": None if r.random() < 0.8 else "%s-deploy" % ctx["team"],
            "launch_template": [],
            "monitoring": r.random() < 0.5,
            "source_dest_check": True,
            "tags": tags,
            "tags_all": dict(tags, Region=REGION),
            "timeouts": None,
            "user_data": self.hexid(40) if r.random() < 0.6 else None,
            "user_data_replace_on_change": False,
            "volume_tags": None,
        }
        if ami_known:
            after["ami"] = ami
        unknown = {}
        refs = {"subnet_id": ["aws_subnet.%s" % role, "aws_subnet.%s.id" % role],
                "vpc_security_group_ids": ["aws_security_group.%s.id" % role]}
        if not ami_known:
            refs["ami"] = ["data.aws_ami.ubuntu.id", "data.aws_ami.ubuntu"]
        rbd = {
            "delete_on_termination": True,
            "encrypted": r.random() < 0.95,
            "tags": None,
            "volume_size": r.choice([8, 20, 30, 50, 100, 200, 500]),
            "volume_type": r.choice(["gp3", "gp3", "gp2"]),
        }
        if rbd_unknown:
            # Optional+Computed block left unset: the whole block is unknown.
            self.stats["aws_instance_root_block_device_unknown"] += 1
        else:
            after["root_block_device"] = [rbd]
        if existing:
            iid = "i-0" + self.hexid(16)
            after.update({
                "ami": ami, "arn": "arn:aws:ec2:%s:%s:instance/%s" % (REGION, ACCOUNT, iid),
                "associate_public_ip_address": False, "availability_zone": r.choice(AZS),
                "capacity_reservation_specification": [{"capacity_reservation_preference": "open",
                                                        "capacity_reservation_target": []}],
                "cpu_core_count": 1, "cpu_threads_per_core": 2,
                "ebs_block_device": [], "ebs_optimized": False, "enclave_options": [{"enabled": False}],
                "ephemeral_block_device": [], "host_id": "", "id": iid, "instance_state": "running",
                "ipv6_address_count": 0, "ipv6_addresses": [],
                "maintenance_options": [{"auto_recovery": "default"}],
                "metadata_options": [{"http_endpoint": "enabled", "http_put_response_hop_limit": 1,
                                      "http_tokens": r.choice(["required", "optional"]),
                                      "instance_metadata_tags": "disabled"}],
                "network_interface": [], "outpost_arn": "", "password_data": "",
                "placement_group": "", "primary_network_interface_id": "eni-0" + self.hexid(16),
                "private_dns": "ip-10-0-0-1.%s.compute.internal" % REGION,
                "private_ip": self.ip(), "public_dns": "", "public_ip": "",
                "secondary_private_ips": [], "security_groups": [],
                "subnet_id": "subnet-0" + self.hexid(16), "tenancy": "default",
                "vpc_security_group_ids": ["sg-0" + self.hexid(16)],
            })
            rbd.update({"device_name": "/dev/xvda", "iops": 3000, "kms_key_id": "",
                        "throughput": 125, "volume_id": "vol-0" + self.hexid(16)})
            if rbd_unknown:
                after["root_block_device"] = [rbd]
        else:
            for k in ("arn", "associate_public_ip_address", "availability_zone",
                      "capacity_reservation_specification", "cpu_core_count",
                      "cpu_threads_per_core", "ebs_block_device", "ebs_optimized",
                      "enclave_options", "ephemeral_block_device", "host_id",
                      "host_resource_group_arn", "id", "instance_initiated_shutdown_behavior",
                      "instance_lifecycle", "instance_state", "ipv6_address_count",
                      "ipv6_addresses", "maintenance_options", "metadata_options",
                      "network_interface", "outpost_arn", "password_data", "placement_group",
                      "placement_partition_number", "primary_network_interface_id",
                      "private_dns", "private_dns_name_options", "private_ip", "public_dns",
                      "public_ip", "secondary_private_ips", "security_groups",
                      "spot_instance_request_id", "subnet_id", "tenancy", "user_data_base64",
                      "vpc_security_group_ids"):
                unknown[k] = True
            if not ami_known:
                unknown["ami"] = True
            if rbd_unknown:
                unknown["root_block_device"] = True
            else:
                unknown["root_block_device"] = [{"device_name": True, "iops": True, "kms_key_id": True,
                                                 "throughput": True, "volume_id": True}]
        return Res(after, unknown, None, refs)

    def _rule(self, from_port, to_port, protocol, cidrs, desc, ipv6=None, sgs=None, self_=False):
        return {
            "cidr_blocks": cidrs, "description": desc, "from_port": from_port,
            "ipv6_cidr_blocks": ipv6 or [], "prefix_list_ids": [], "protocol": protocol,
            "security_groups": sgs or [], "self": self_, "to_port": to_port,
        }

    def aws_security_group(self, ctx, role, existing):
        r = self.rng
        ingress = []
        for _ in range(r.choice([1, 1, 2, 2, 3, 4])):
            kind = r.random()
            if kind < 0.35:
                ingress.append(self._rule(443, 443, "tcp", ["0.0.0.0/0"], "HTTPS from anywhere"))
            elif kind < 0.55:
                ingress.append(self._rule(80, 80, "tcp", ["0.0.0.0/0"], "HTTP from anywhere",
                                          ipv6=["::/0"]))
            elif kind < 0.75:
                ingress.append(self._rule(22, 22, "tcp", ["10.0.0.0/8"], "SSH from the VPN"))
            elif kind < 0.9:
                p = r.choice([5432, 3306, 6379, 8080, 9200])
                ingress.append(self._rule(p, p, "tcp", [], "app traffic",
                                          sgs=["sg-0" + self.hexid(16)]))
            else:
                ingress.append(self._rule(0, 0, "-1", [], "self", self_=True))
        if r.random() < 0.03:
            self.viol("aws_security_group_ssh_open_to_world")
            v = r.random()
            if v < 0.6:
                bad = self._rule(22, 22, "tcp", ["0.0.0.0/0"], "SSH (temporary)")
            elif v < 0.8:
                bad = self._rule(0, 65535, "tcp", ["10.0.0.0/8", "0.0.0.0/0"], "all tcp")
            else:
                bad = self._rule(22, 22, "tcp", [], "SSH v6", ipv6=["::/0"])
            ingress.insert(r.randrange(len(ingress) + 1), bad)
        egress = [self._rule(0, 0, "-1", ["0.0.0.0/0"], "", ipv6=["::/0"])]
        name = "%s-%s-%s-sg-%d" % (ctx["team"], ctx["env"], role, self.next_num())
        tags = self.tags(ctx, role)
        after = {
            "description": "Managed by Terraform", "egress": egress, "ingress": ingress,
            "name": name, "revoke_rules_on_delete": False, "tags": tags,
            "tags_all": dict(tags, Region=REGION), "timeouts": None,
        }
        refs = {"vpc_id": ["aws_vpc.main.id", "aws_vpc.main"]}
        unknown = {}
        if existing:
            sid = "sg-0" + self.hexid(16)
            after.update({"arn": "arn:aws:ec2:%s:%s:security-group/%s" % (REGION, ACCOUNT, sid),
                          "id": sid, "name_prefix": "", "owner_id": ACCOUNT,
                          "vpc_id": "vpc-0" + self.hexid(16)})
        else:
            unknown = {"arn": True, "id": True, "name_prefix": True, "owner_id": True, "vpc_id": True}
        return Res(after, unknown, None, refs)

    def aws_s3_bucket(self, ctx, role, existing):
        r = self.rng
        bucket = "%s-%s-%s-%d" % (ctx["team"], ctx["env"], role, self.next_num())
        acl = "private"
        x = r.random()
        if x < 0.03:
            acl = r.choice(["public-read", "public-read-write"])
            self.viol("aws_s3_bucket_public_acl")
        elif x < 0.05:
            acl = "log-delivery-write"
        tags = self.tags(ctx, role)
        after = {"acl": acl, "bucket": bucket, "force_destroy": False, "tags": tags,
                 "tags_all": dict(tags, Region=REGION), "timeouts": None}
        unknown = {}
        if existing:
            after.update({
                "acceleration_status": "", "arn": "arn:aws:s3:::" + bucket,
                "bucket_domain_name": bucket + ".s3.amazonaws.com", "bucket_prefix": "",
                "bucket_regional_domain_name": "%s.s3.%s.amazonaws.com" % (bucket, REGION),
                "cors_rule": [], "grant": [], "hosted_zone_id": "Z1BKCTXD74EZPE", "id": bucket,
                "lifecycle_rule": [], "logging": [], "object_lock_configuration": [],
                "object_lock_enabled": False, "policy": "", "region": REGION,
                "replication_configuration": [], "request_payer": "BucketOwner",
                "server_side_encryption_configuration": [{"rule": [{
                    "apply_server_side_encryption_by_default": [{"kms_master_key_id": "",
                                                                 "sse_algorithm": "AES256"}],
                    "bucket_key_enabled": False}]}],
                "versioning": [{"enabled": r.random() < 0.7, "mfa_delete": False}],
                "website": [], "website_domain": None, "website_endpoint": None,
            })
        else:
            for k in ("acceleration_status", "arn", "bucket_domain_name", "bucket_prefix",
                      "bucket_regional_domain_name", "cors_rule", "grant", "hosted_zone_id", "id",
                      "lifecycle_rule", "logging", "object_lock_configuration",
                      "object_lock_enabled", "policy", "region", "replication_configuration",
                      "request_payer", "server_side_encryption_configuration", "versioning",
                      "website", "website_domain", "website_endpoint"):
                unknown[k] = True
        return Res(after, unknown)

    def aws_s3_bucket_public_access_block(self, ctx, role, existing):
        r = self.rng
        lax = r.random() < 0.05
        after = {
            "block_public_acls": not lax, "block_public_policy": not lax,
            "ignore_public_acls": True, "restrict_public_buckets": not lax or r.random() < 0.5,
        }
        refs = {"bucket": ["aws_s3_bucket.%s.id" % role, "aws_s3_bucket.%s" % role]}
        unknown = {}
        if existing:
            b = "%s-%s-%s-%d" % (ctx["team"], ctx["env"], role, self.next_num())
            after.update({"bucket": b, "id": b})
        else:
            unknown = {"bucket": True, "id": True}
        return Res(after, unknown, None, refs)

    def aws_db_instance(self, ctx, role, existing):
        r = self.rng
        engine, version, port = r.choice([("postgres", "15.4", 5432), ("postgres", "14.9", 5432),
                                          ("mysql", "8.0.35", 3306), ("mariadb", "10.11.6", 3306)])
        encrypted = r.random() < 0.9
        if not encrypted:
            self.viol("aws_db_instance_unencrypted")
        public = r.random() < 0.04
        if public:
            self.viol("aws_db_instance_public")
        ident = "%s-%s-%s-db-%d" % (ctx["team"], ctx["env"], role, self.next_num())
        tags = self.tags(ctx, role)
        after = {
            "allocated_storage": r.choice([20, 50, 100, 250, 500]),
            "allow_major_version_upgrade": None, "apply_immediately": False,
            "auto_minor_version_upgrade": True, "backup_retention_period": r.choice([0, 7, 14, 35]),
            "blue_green_update": [], "copy_tags_to_snapshot": True,
            "db_subnet_group_name": "%s-%s-db-subnets" % (ctx["team"], ctx["env"]),
            "delete_automated_backups": True, "deletion_protection": ctx["env"] == "prod",
            "engine": engine, "engine_version": version, "final_snapshot_identifier": None,
            "iam_database_authentication_enabled": False, "identifier": ident,
            "instance_class": r.choice(DB_CLASSES), "manage_master_user_password": None,
            "max_allocated_storage": 1000, "monitoring_interval": 0, "multi_az": ctx["env"] == "prod",
            "password": "bench-%s" % self.hexid(24), "performance_insights_enabled": False,
            "publicly_accessible": public, "replicate_source_db": None, "restore_to_point_in_time": [],
            "s3_import": [], "skip_final_snapshot": ctx["env"] != "prod",
            "storage_encrypted": encrypted, "storage_type": "gp3", "tags": tags,
            "tags_all": dict(tags, Region=REGION), "timeouts": None, "username": "app_admin",
        }
        refs = {"vpc_security_group_ids": ["aws_security_group.db.id", "aws_security_group.db"]}
        unknown = {}
        if existing:
            after.update({
                "address": "%s.c%s.%s.rds.amazonaws.com" % (ident, self.hexid(12), REGION),
                "arn": "arn:aws:rds:%s:%s:db:%s" % (REGION, ACCOUNT, ident),
                "availability_zone": r.choice(AZS), "backup_window": "03:00-04:00",
                "ca_cert_identifier": "rds-ca-rsa2048-g1", "character_set_name": "",
                "db_name": "app", "domain": "", "endpoint": "%s.rds.amazonaws.com:%d" % (ident, port),
                "hosted_zone_id": "Z29XKXDKYMONMX", "id": "db-" + self.hexid(26).upper(),
                "iops": 3000, "kms_key_id": ("arn:aws:kms:%s:%s:key/%s" % (REGION, ACCOUNT, self.hexid(32)))
                if encrypted else "", "latest_restorable_time": "2024-05-01T11:55:00Z",
                "license_model": "general-public-license", "listener_endpoint": [],
                "maintenance_window": "sun:05:00-sun:06:00", "master_user_secret": [],
                "monitoring_role_arn": "", "nchar_character_set_name": "",
                "network_type": "IPV4", "option_group_name": "default:%s" % engine,
                "parameter_group_name": "default.%s" % engine, "port": port,
                "replicas": [], "resource_id": "db-" + self.hexid(26).upper(),
                "status": "available", "storage_throughput": 125,
                "vpc_security_group_ids": ["sg-0" + self.hexid(16)],
            })
        else:
            for k in ("address", "arn", "availability_zone", "backup_window", "ca_cert_identifier",
                      "character_set_name", "db_name", "domain", "endpoint", "hosted_zone_id",
                      "id", "iops", "kms_key_id", "latest_restorable_time", "license_model",
                      "listener_endpoint", "maintenance_window", "master_user_secret",
                      "monitoring_role_arn", "nchar_character_set_name", "network_type",
                      "option_group_name", "parameter_group_name", "port", "replicas",
                      "resource_id", "status", "storage_throughput", "vpc_security_group_ids"):
                unknown[k] = True
        return Res(after, unknown, {"password": True}, refs)

    def aws_ebs_volume(self, ctx, role, existing):
        r = self.rng
        encrypted = r.random() < 0.92
        if not encrypted:
            self.viol("aws_ebs_volume_unencrypted")
        vtype = r.choices(["gp3", "gp2", "io1"], [60, 35, 5])[0]
        tags = self.tags(ctx, role)
        after = {"availability_zone": r.choice(AZS), "encrypted": encrypted, "final_snapshot": False,
                 "multi_attach_enabled": False, "outpost_arn": None,
                 "size": r.choice([10, 20, 50, 100, 200, 500, 1000]), "tags": tags,
                 "tags_all": dict(tags, Region=REGION), "timeouts": None, "type": vtype}
        if vtype == "io1":
            after["iops"] = r.choice([1000, 3000, 6000])
        unknown = {}
        if existing:
            vid = "vol-0" + self.hexid(16)
            after.update({"arn": "arn:aws:ec2:%s:%s:volume/%s" % (REGION, ACCOUNT, vid), "id": vid,
                          "kms_key_id": ("arn:aws:kms:%s:%s:key/%s" % (REGION, ACCOUNT, self.hexid(32)))
                          if encrypted else "", "snapshot_id": "",
                          "throughput": 125 if vtype == "gp3" else 0})
            after.setdefault("iops", 3000 if vtype == "gp3" else 100)
        else:
            unknown = {"arn": True, "id": True, "kms_key_id": True, "snapshot_id": True, "throughput": True}
            if "iops" not in after:
                unknown["iops"] = True
        return Res(after, unknown)

    def aws_iam_policy(self, ctx, role, existing):
        r = self.rng
        name = "%s-%s-%s-policy-%d" % (ctx["team"], ctx["env"], role, self.next_num())
        statements = []
        for _ in range(r.choice([1, 1, 2, 3])):
            svc = r.choice(["s3", "sqs", "dynamodb", "kms", "logs"])
            statements.append({
                "Sid": "Allow%s%d" % (svc.capitalize(), len(statements)),
                "Effect": "Allow",
                "Action": ["%s:%s" % (svc, a) for a in r.sample(["Get*", "List*", "Put*", "Describe*", "Delete*"], 2)],
                "Resource": ["arn:aws:%s:%s:%s:%s-%s/*" % (svc, REGION, ACCOUNT, ctx["team"], role)],
            })
        if r.random() < 0.05:
            self.viol("aws_iam_policy_admin_star")
            statements.append({"Sid": "Admin", "Effect": "Allow", "Action": "*", "Resource": "*"})
        policy = json.dumps({"Version": "2012-10-17", "Statement": statements}, separators=(",", ":"))
        tags = self.tags(ctx, role)
        after = {"description": "Access for %s %s" % (ctx["team"], role), "name": name, "path": "/",
                 "policy": policy, "tags": tags, "tags_all": dict(tags, Region=REGION)}
        unknown = {}
        if existing:
            after.update({"arn": "arn:aws:iam::%s:policy/%s" % (ACCOUNT, name), "id": "arn:aws:iam::%s:policy/%s" % (ACCOUNT, name),
                          "name_prefix": "", "policy_id": "ANPA" + self.hexid(17).upper()})
        else:
            unknown = {"arn": True, "id": True, "name_prefix": True, "policy_id": True}
        return Res(after, unknown)

    def aws_subnet(self, ctx, role, existing):
        r = self.rng
        tags = self.tags(ctx, role)
        after = {"assign_ipv6_address_on_creation": False, "availability_zone": r.choice(AZS),
                 "cidr_block": "10.%d.%d.0/24" % (r.randint(0, 255), r.randint(0, 255)),
                 "customer_owned_ipv4_pool": None, "enable_dns64": False,
                 "enable_resource_name_dns_a_record_on_launch": False,
                 "enable_resource_name_dns_aaaa_record_on_launch": False,
                 "ipv6_cidr_block": None, "ipv6_native": False,
                 "map_customer_owned_ip_on_launch": None, "map_public_ip_on_launch": r.random() < 0.2,
                 "outpost_arn": None, "tags": tags, "tags_all": dict(tags, Region=REGION), "timeouts": None}
        refs = {"vpc_id": ["aws_vpc.main.id", "aws_vpc.main"]}
        unknown = {}
        if existing:
            sid = "subnet-0" + self.hexid(16)
            after.update({"arn": "arn:aws:ec2:%s:%s:subnet/%s" % (REGION, ACCOUNT, sid),
                          "availability_zone_id": "euw1-az1", "id": sid,
                          "ipv6_cidr_block_association_id": "", "owner_id": ACCOUNT,
                          "private_dns_hostname_type_on_launch": "ip-name",
                          "vpc_id": "vpc-0" + self.hexid(16)})
        else:
            unknown = {"arn": True, "availability_zone_id": True, "id": True,
                       "ipv6_cidr_block_association_id": True, "owner_id": True,
                       "private_dns_hostname_type_on_launch": True, "vpc_id": True}
        return Res(after, unknown, None, refs)

    def aws_vpc(self, ctx, role, existing):
        r = self.rng
        tags = self.tags(ctx, role)
        after = {"assign_generated_ipv6_cidr_block": None, "cidr_block": "10.%d.0.0/16" % r.randint(0, 255),
                 "enable_dns_hostnames": True, "enable_dns_support": True,
                 "enable_network_address_usage_metrics": False, "instance_tenancy": "default",
                 "ipv4_ipam_pool_id": None, "ipv4_netmask_length": None, "ipv6_ipam_pool_id": None,
                 "ipv6_netmask_length": None, "tags": tags, "tags_all": dict(tags, Region=REGION)}
        unknown = {}
        if existing:
            vid = "vpc-0" + self.hexid(16)
            after.update({"arn": "arn:aws:ec2:%s:%s:vpc/%s" % (REGION, ACCOUNT, vid),
                          "default_network_acl_id": "acl-0" + self.hexid(16),
                          "default_route_table_id": "rtb-0" + self.hexid(16),
                          "default_security_group_id": "sg-0" + self.hexid(16),
                          "dhcp_options_id": "dopt-0" + self.hexid(16), "id": vid,
                          "ipv6_association_id": "", "ipv6_cidr_block": "",
                          "ipv6_cidr_block_network_border_group": "",
                          "main_route_table_id": "rtb-0" + self.hexid(16), "owner_id": ACCOUNT})
        else:
            for k in ("arn", "default_network_acl_id", "default_route_table_id",
                      "default_security_group_id", "dhcp_options_id", "id", "ipv6_association_id",
                      "ipv6_cidr_block", "ipv6_cidr_block_network_border_group",
                      "main_route_table_id", "owner_id"):
                unknown[k] = True
        return Res(after, unknown)

    # --------------------------------------------------------------------- data

    def data_aws_ami(self, ctx, role, existing):
        after = {"executable_users": None,
                 "filter": [{"name": "name", "values": ["ubuntu/images/hvm-ssd/ubuntu-jammy-22.04-amd64-server-*"]},
                            {"name": "virtualization-type", "values": ["hvm"]}],
                 "include_deprecated": False, "most_recent": True, "name_regex": None,
                 "owners": ["099720109477"], "timeouts": None}
        unknown = {k: True for k in ("architecture", "arn", "block_device_mappings", "boot_mode",
                                     "creation_date", "deprecation_time", "description", "ena_support",
                                     "hypervisor", "id", "image_id", "image_location", "image_owner_alias",
                                     "image_type", "imds_support", "kernel_id", "name", "owner_id",
                                     "platform", "platform_details", "product_codes", "public",
                                     "ramdisk_id", "root_device_name", "root_device_type",
                                     "root_snapshot_id", "sriov_net_support", "state", "state_reason",
                                     "tags", "tpm_support", "usage_operation", "virtualization_type")}
        return Res(after, unknown)

    def data_aws_iam_policy_document(self, ctx, role, existing):
        r = self.rng
        stmts = []
        for i in range(r.choice([1, 2])):
            stmts.append({"actions": ["s3:GetObject", "s3:ListBucket"], "condition": [],
                          "effect": "Allow", "not_actions": None, "not_principals": [],
                          "not_resources": None, "principals": [], "sid": "S%d" % i})
        unknown = {"id": True, "json": True, "minified_json": True,
                   "statement": [{"resources": True} for _ in stmts]}
        after = {"override_policy_documents": None, "policy_id": None,
                 "source_policy_documents": None, "statement": stmts, "version": None}
        refs = {"statement": ["aws_s3_bucket.%s.arn" % role, "aws_s3_bucket.%s" % role]}
        return Res(after, unknown, None, refs)


def choose_actions(r, mode):
    if mode == "data":
        return ["read"], r.choice(["read_because_config_unknown", "read_because_dependency_pending"])
    x = r.random()
    if x < 0.80:
        return ["create"], None
    if x < 0.90:
        return ["update"], None
    if x < 0.97:
        return ["no-op"], None
    return ["delete", "create"], "replace_because_cannot_update"


def fill_blocks(r, total, mix, used_names):
    """Resource blocks (mode, type, name, keys) whose instance count adds up to `total`."""
    population = [(m, t) for m, t, _ in mix]
    weights = [w for _, _, w in mix]
    blocks = []
    remaining = total
    while remaining > 0:
        mode, rtype = r.choices(population, weights)[0]
        role = r.choice(ROLES)
        key = (mode, rtype)
        seen = used_names.setdefault(key, {})
        k = seen.get(role, 0)
        seen[role] = k + 1
        name = role if k == 0 else "%s_%d" % (role, k)
        x = r.random()
        if x < 0.60 or mode == "data" and x < 0.85:
            keys = [None]
        elif x < 0.85:
            keys = list(range(r.choice([2, 2, 3, 3, 4, 5, 6, 8, 10, 12, 20])))
        else:
            base = FOREACH_KEYS.get(rtype, DEFAULT_FOREACH_KEYS)
            cnt = r.randint(2, len(base) + 2)
            keys = [base[i] if i < len(base) else "%s-%d" % (base[i % len(base)], i // len(base))
                    for i in range(cnt)]
        keys = keys[:remaining]
        remaining -= len(keys)
        blocks.append((mode, rtype, name, keys, role))
    # roughly the order Terraform sorts addresses in: managed before data, then type, name
    blocks.sort(key=lambda b: (b[0] == "data", b[1], b[2]))
    return blocks


def new_module(r, address, call, total, mix):
    return {"address": address, "call": call, "ctx": {"team": r.choice(TEAMS), "env": r.choice(ENVS)},
            "blocks": fill_blocks(r, total, mix, {}), "children": []}


def build_layout(r, n, module_fraction):
    n_mod = int(round(n * module_fraction))
    root = new_module(r, None, None, n - n_mod, ROOT_MIX)
    remaining = n_mod
    i = svc_i = worker_i = 0
    while remaining > 0:
        size = min(remaining, r.randint(8, 60))
        remaining -= size
        x = r.random()
        if x < 0.75:
            call = "app_%d" % i
            addr = "module." + call
            i += 1
        elif x < 0.90:
            call = "svc"
            key = SVC_KEYS[svc_i % len(SVC_KEYS)]
            if svc_i >= len(SVC_KEYS):
                key += "-%d" % (svc_i // len(SVC_KEYS))
            addr = 'module.svc["%s"]' % key
            svc_i += 1
        else:
            call = "worker"
            addr = "module.worker[%d]" % worker_i
            worker_i += 1
        db_size = 0
        if size >= 6 and r.random() < 0.4:
            db_size = r.randint(3, min(12, size - 3))
        mod = new_module(r, addr, call, size - db_size, APP_MIX)
        if db_size:
            mod["children"].append(new_module(r, addr + ".module.db", "db", db_size, DB_MIX))
        root["children"].append(mod)
    root["children"].sort(key=lambda m: m["address"])
    return root


def fmt_index(k):
    if k is None:
        return ""
    if isinstance(k, int):
        return "[%d]" % k
    return '["%s"]' % k


class Writer:
    def __init__(self, gen, out_f, rc_f):
        self.g = gen
        self.out = out_f
        self.rc = rc_f
        self.rc_first = True
        self.config = {}  # module call path -> config module dict (first instance only)

    def expressions(self, res):
        ex = {}
        for k, v in res.after.items():
            if v is None or k == "tags_all" or k in res.refs:
                continue
            if isinstance(v, list) and v and isinstance(v[0], dict) and k in (
                    "root_block_device", "statement", "filter"):
                ex[k] = [{kk: {"constant_value": vv} for kk, vv in e.items() if vv is not None} for e in v]
            elif isinstance(v, list) and not v:
                continue
            else:
                ex[k] = {"constant_value": v}
        for k, refs in res.refs.items():
            ex[k] = {"references": refs}
        return ex

    def gen_instance(self, rtype, mode, ctx, role, existing):
        fn = getattr(self.g, ("data_" + rtype) if mode == "data" else rtype)
        return fn(ctx, role, existing)

    def write_module(self, mod, prior_sink, config_sink):
        """Stream the body of one planned_values module object to self.out.

        Writes `"resources":[...],"address":...,"child_modules":[...]` (Terraform's
        key order, empty parts omitted); resource changes go to self.rc, this
        module's prior_state object is appended to prior_sink and its
        configuration (first instance of each module call) filled into config_sink.
        """
        g, r, out = self.g, self.g.rng, self.out
        prefix = (mod["address"] + ".") if mod["address"] else ""
        ctx = mod["ctx"]
        wrote = False
        prior_resources = []
        cfg_resources = [] if config_sink is not None else None
        if mod["blocks"]:
            out.write('"resources":[')
            wrote = True
        first = True
        for mode, rtype, name, keys, role in mod["blocks"]:
            cfg_res = None
            for key in keys:
                actions, reason = choose_actions(r, mode)
                existing = actions[0] in ("update", "no-op") or actions == ["delete", "create"]
                state, num0 = r.getstate(), g.num
                res = self.gen_instance(rtype, mode, ctx, role, existing)
                after = res.after
                after_sensitive = overlay(mirror(after), res.sensitive)
                after_unknown = overlay(mirror(after), res.unknown)
                before = None
                before_sensitive = False
                replace_paths = None
                if existing:
                    before = copy_json(after)
                    before_sensitive = overlay(mirror(before), res.sensitive)
                    if actions == ["update"]:
                        if rtype == "aws_instance" and r.random() < 0.3:
                            before["instance_type"] = r.choice(APPROVED_INSTANCE_TYPES)
                        elif "tags" in before:
                            before["tags"] = {k: v for k, v in before["tags"].items() if k != "CostCenter"}
                            before["tags"]["Version"] = "v%d" % r.randint(1, 9)
                            before["tags_all"] = dict(before["tags"], Region=REGION)
                        else:
                            for k, v in before.items():
                                if isinstance(v, bool):
                                    before[k] = not v
                                    break
                    elif actions == ["delete", "create"]:
                        # The new object is planned from config: computed values unknown again.
                        # Replay the same random draws (config values come first in every
                        # generator) so the new object has the same config; keep counters.
                        new_state, num1 = r.getstate(), g.num
                        saved = copy_json(g.stats)
                        r.setstate(state)
                        g.num = num0
                        fresh = self.gen_instance(rtype, mode, ctx, role, False)
                        r.setstate(new_state)
                        g.num = num1
                        g.stats = saved
                        attr = REPLACE_ATTR[rtype]
                        old = before.get(attr)
                        if attr == "cidr_block":
                            before[attr] = "10.254.%d.0/24" % r.randint(0, 255)
                        elif attr == "availability_zone":
                            before[attr] = AZS[(AZS.index(old) + 1) % len(AZS)] if old in AZS else AZS[0]
                        elif attr == "engine":
                            before[attr] = "mysql" if old != "mysql" else "mariadb"
                        elif isinstance(old, str):
                            before[attr] = old + "-old"
                        after = fresh.after
                        after_sensitive = overlay(mirror(after), fresh.sensitive)
                        after_unknown = overlay(mirror(after), fresh.unknown)
                        replace_paths = [[attr]]
                        res = fresh
                address = "%s%s%s.%s%s" % (prefix, "data." if mode == "data" else "", rtype, name,
                                           fmt_index(key))
                # Terraform prints struct fields in declaration order and object
                # values (cty) with sorted keys; serialise each value once and splice.
                ident = {"address": address, "mode": mode, "type": rtype, "name": name}
                if key is not None:
                    ident["index"] = key
                ident["provider_name"] = PROVIDER
                ident["schema_version"] = SCHEMA_VERSION.get(rtype, 0)
                ident_s = dumps(ident)[:-1]
                after_s = sdumps(after)
                after_sens_s = sdumps(after_sensitive)
                if not first:
                    out.write(",")
                first = False
                out.write('%s,"values":%s,"sensitive_values":%s}' % (ident_s, after_s, after_sens_s))
                head = {"address": address}
                if mod["address"]:
                    head["module_address"] = mod["address"]
                head.update({"mode": mode, "type": rtype, "name": name})
                if key is not None:
                    head["index"] = key
                head["provider_name"] = PROVIDER
                before_s = sdumps(before)
                before_sens_s = sdumps(before_sensitive)
                rc_s = '%s,"change":{"actions":%s,"before":%s,"after":%s,"after_unknown":%s,' \
                       '"before_sensitive":%s,"after_sensitive":%s%s}%s}' % (
                           dumps(head)[:-1], dumps(actions), before_s, after_s, sdumps(after_unknown),
                           before_sens_s, after_sens_s,
                           (',"replace_paths":%s' % dumps(replace_paths)) if replace_paths else "",
                           (',"action_reason":%s' % dumps(reason)) if reason else "")
                if not self.rc_first:
                    self.rc.write(",")
                self.rc_first = False
                self.rc.write(rc_s)
                if existing:
                    prior_resources.append('%s,"values":%s,"sensitive_values":%s}' % (
                        ident_s, before_s, before_sens_s))
                st = g.stats
                st["resource_changes"] += 1
                st["by_type"][("data." if mode == "data" else "") + rtype] = \
                    st["by_type"].get(("data." if mode == "data" else "") + rtype, 0) + 1
                a = ",".join(actions)
                st["by_action"][a] = st["by_action"].get(a, 0) + 1
                if mod["address"]:
                    st["in_modules"] += 1
                if cfg_resources is not None and cfg_res is None:
                    cfg_res = {"address": "%s%s.%s" % ("data." if mode == "data" else "", rtype, name),
                               "mode": mode, "type": rtype, "name": name, "provider_config_key": "aws",
                               "expressions": self.expressions(res),
                               "schema_version": SCHEMA_VERSION.get(rtype, 0)}
                    if key is not None:
                        if isinstance(key, int):
                            cfg_res["count_expression"] = {"constant_value": len(keys)}
                        else:
                            cfg_res["for_each_expression"] = {"references": ["local.%s_keys" % name]}
                    cfg_resources.append(dumps(cfg_res))
        if mod["blocks"]:
            out.write("]")
        if mod["address"]:
            out.write('%s"address":%s' % ("," if wrote else "", dumps(mod["address"])))
            wrote = True
        prior_children = []
        if mod["children"]:
            out.write('%s"child_modules":[' % ("," if wrote else ""))
            for i, child in enumerate(mod["children"]):
                g.stats["modules"] += 1
                out.write(",{" if i else "{")
                child_cfg = None
                if config_sink is not None:
                    calls = config_sink.setdefault("module_calls", {})
                    if child["call"] not in calls:
                        child_cfg = {}
                        call = {"source": "./modules/%s" % child["call"].split("_")[0]}
                        if child["call"] == "svc":
                            call["for_each_expression"] = {"references": ["local.services"]}
                        elif child["call"] == "worker":
                            call["count_expression"] = {"references": ["var.worker_count"]}
                        calls[child["call"]] = (call, child_cfg)
                self.write_module(child, prior_children, child_cfg)
                out.write("}")
            out.write("]")
        if cfg_resources:
            config_sink["resources"] = cfg_resources
        if prior_resources or prior_children:
            parts = []
            if prior_resources:
                parts.append('"resources":[%s]' % ",".join(prior_resources))
            if mod["address"]:
                parts.append('"address":%s' % dumps(mod["address"]))
            if prior_children:
                parts.append('"child_modules":[%s]' % ",".join(prior_children))
            prior_sink.append("{%s}" % ",".join(parts))


def render_config_module(sink, extra=None):
    """configuration.root_module / module_calls[*].module from a Writer config sink (strings)."""
    parts = []
    if sink.get("resources"):
        parts.append('"resources":[%s]' % ",".join(sink["resources"]))
    if sink.get("module_calls"):
        calls = []
        for name, (call, child) in sink["module_calls"].items():
            calls.append('%s:%s,"module":%s}' % (dumps(name), dumps(call)[:-1], render_config_module(child)))
        parts.append('"module_calls":{%s}' % ",".join(calls))
    if extra:
        for k, v in extra.items():
            parts.append('%s:%s' % (dumps(k), dumps(v)))
    return "{%s}" % ",".join(parts)


def generate(n, out_path, seed, module_fraction=0.30):
    g = Gen(seed)
    r = g.rng
    layout = build_layout(r, n, module_fraction)
    out_dir = os.path.dirname(os.path.abspath(out_path)) or "."
    tmp_out = tempfile.NamedTemporaryFile("w", encoding="utf-8", dir=out_dir, prefix=".gen_plan.",
                                          suffix=".tmp", delete=False)
    rc_f = tempfile.TemporaryFile("w+", encoding="utf-8", dir=out_dir)
    try:
        with tmp_out as out:
            out.write('{"format_version":"1.2","terraform_version":"%s",' % TF_VERSION)
            out.write('"variables":%s,' % dumps({
                "environment": {"value": "prod"}, "region": {"value": REGION},
                "worker_count": {"value": 3}}))
            out.write('"planned_values":{"outputs":%s,"root_module":{' % dumps({
                "vpc_id": {"sensitive": False}, "db_password": {"sensitive": True}}))
            w = Writer(g, out, rc_f)
            prior = []
            config_root = {}
            w.write_module(layout, prior, config_root)
            out.write("}},")
            out.write('"resource_changes":[')
            rc_f.flush()
            rc_f.seek(0)
            shutil.copyfileobj(rc_f, out, 1 << 20)
            out.write("],")
            out.write('"output_changes":%s,' % dumps({
                "vpc_id": {"actions": ["create"], "before": None, "after": None, "after_unknown": True,
                           "before_sensitive": False, "after_sensitive": False},
                "db_password": {"actions": ["create"], "before": None, "after": "bench-secret",
                                "after_unknown": False, "before_sensitive": False,
                                "after_sensitive": True}}))
            prior_root = prior[0] if prior else "{}"
            out.write('"prior_state":{"format_version":"1.0","terraform_version":"%s",'
                      '"values":{"root_module":%s}},' % (TF_VERSION, prior_root))
            provider_config = {"aws": {"name": "aws", "full_name": PROVIDER, "version_constraint": "~> 5.0",
                                       "expressions": {"region": {"references": ["var.region"]}}}}
            out.write('"configuration":{"provider_config":%s,"root_module":%s},' % (
                dumps(provider_config),
                render_config_module(config_root, {"variables": {
                    "environment": {"default": "prod"}, "region": {"default": REGION},
                    "worker_count": {"default": 3}}})))
            out.write('"timestamp":"%s","applyable":true,"complete":true,"errored":false}\n' % TIMESTAMP)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_out.name, 0o666 & ~umask)  # NamedTemporaryFile creates it 0600
        os.replace(tmp_out.name, out_path)
    except BaseException:
        try:
            os.unlink(tmp_out.name)
        except OSError:
            pass
        raise
    finally:
        rc_f.close()
    return g.stats


def main(argv=None):
    ap = argparse.ArgumentParser(description="Generate a realistic Terraform plan JSON (format 1.2).")
    ap.add_argument("n", type=int, help="number of resource_changes")
    ap.add_argument("out", help="output path (.json)")
    ap.add_argument("--seed", type=int, default=42, help="random seed (default 42)")
    ap.add_argument("--module-fraction", type=float, default=0.30,
                    help="share of resources inside modules (default 0.30)")
    ap.add_argument("--stats", help="also write the summary (counts, expected violations) as JSON here")
    ap.add_argument("--quiet", action="store_true", help="do not print the summary to stderr")
    args = ap.parse_args(argv)
    if args.n < 1:
        ap.error("N must be >= 1")
    if not 0.0 <= args.module_fraction <= 1.0:
        ap.error("--module-fraction must be between 0 and 1")
    t0 = time.perf_counter()
    stats = generate(args.n, args.out, args.seed, args.module_fraction)
    stats["seconds"] = round(time.perf_counter() - t0, 3)
    stats["bytes"] = os.path.getsize(args.out)
    stats["seed"] = args.seed
    if args.stats:
        with open(args.stats, "w", encoding="utf-8") as f:
            json.dump(stats, f, indent=2, sort_keys=True)
            f.write("\n")
    if not args.quiet:
        sys.stderr.write("gen_plan: %d resources -> %s (%.1f MB) in %.2fs\n" % (
            args.n, args.out, stats["bytes"] / 1e6, stats["seconds"]))
        sys.stderr.write("gen_plan: expected violations %s\n" % dumps(stats["violations"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
