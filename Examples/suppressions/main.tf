# A small stack whose team silenced its scanners here and there.

resource "aws_s3_bucket" "site" {
  #checkov:skip=CKV_AWS_20:The bucket hosts the public marketing site
  bucket = "web-prod-site"
  acl    = "public-read"
}

#tfsec:ignore:aws-s3-enable-bucket-logging
resource "aws_s3_bucket" "scratch" {
  bucket = "web-dev-scratch"
}

resource "aws_security_group" "vendor" {
  name = "web-prod-vendor"
  ingress {
    from_port   = 22
    to_port     = 22
    protocol    = "tcp"
    cidr_blocks = ["0.0.0.0/0"] #trivy:ignore:AVD-AWS-0107 vendor jump host, see EX-1
  }
}

# kics-scan ignore-line
resource "aws_ebs_volume" "tmp" {
  availability_zone = "eu-west-1a"
  size              = 10
}
