# An AWS image (Debian 12) that carries the drift agent, baselined at bake time.
#
#   npm run package                       # out/drift-agent_<version>_amd64.deb
#   drift keygen --out secrets/bake       # once; keep secrets/bake.key out of version control
#   packer init examples/packer && packer build \
#     -var collector=https://drift.internal:8750 -var role=web examples/packer
#
# The image's baseline is signed with secrets/bake.key, pushed to the collector, and kept
# in /etc/drift/baseline.json; the collector verifies it against secrets/bake.pub
# (drift server --baseline-pubkey). provision.sh removes the key and the admin token.
packer {
  required_plugins {
    amazon = {
      source  = "github.com/hashicorp/amazon"
      version = ">= 1.3.0"
    }
  }
}

variable "region" {
  type    = string
  default = "eu-west-1"
}

variable "collector" {
  type        = string
  description = "URL of the drift collector, for the baseline push and for the agent."
}

variable "role" {
  type    = string
  default = ""
}

variable "deb" {
  type    = string
  default = "out/drift-agent_0.1.0_amd64.deb"
}

variable "sign_key" {
  type      = string
  default   = "secrets/bake.key"
  sensitive = true
}

variable "admin_token_file" {
  type      = string
  default   = "secrets/admin.token"
  sensitive = true
}

variable "enroll_secret_file" {
  type      = string
  default   = "secrets/enroll-secret"
  sensitive = true
}

locals {
  image_name = "web-debian12-${formatdate("YYYYMMDDhhmmss", timestamp())}"
}

source "amazon-ebs" "debian12" {
  region        = var.region
  instance_type = "t3.small"
  ssh_username  = "admin"
  ami_name      = local.image_name
  source_ami_filter {
    filters = {
      name                = "debian-12-amd64-*"
      architecture        = "x86_64"
      virtualization-type = "hvm"
      root-device-type    = "ebs"
    }
    owners      = ["136693071363"] # Debian
    most_recent = true
  }
  tags = {
    Name          = local.image_name
    "drift:image" = local.image_name
  }
}

build {
  sources = ["source.amazon-ebs.debian12"]

  # ... the image's own provisioners come first: drift's baseline must be the last step.

  provisioner "file" {
    source      = var.deb
    destination = "/tmp/drift-agent.deb"
  }
  provisioner "file" {
    source      = var.sign_key
    destination = "/tmp/drift-bake.key"
  }
  provisioner "file" {
    source      = var.admin_token_file
    destination = "/tmp/drift-admin.token"
  }
  provisioner "file" {
    source      = var.enroll_secret_file
    destination = "/tmp/drift-enroll-secret"
  }

  provisioner "shell" {
    script          = "${path.root}/provision.sh"
    execute_command = "sudo -E sh '{{ .Path }}'"
    environment_vars = [
      "DRIFT_DEB=/tmp/drift-agent.deb",
      "DRIFT_IMAGE_ID=${local.image_name}",
      "DRIFT_IMAGE_VERSION=${build.PackerRunUUID}",
      "DRIFT_SIGN_KEY=/tmp/drift-bake.key",
      "DRIFT_COLLECTOR=${var.collector}",
      "DRIFT_ADMIN_TOKEN_FILE=/tmp/drift-admin.token",
      "DRIFT_ENROLL_SECRET_FILE=/tmp/drift-enroll-secret",
      "DRIFT_ROLE=${var.role}",
    ]
  }

  # The uploaded enrollment secret copy and the package file go too.
  provisioner "shell" {
    inline = ["sudo rm -f /tmp/drift-agent.deb /tmp/drift-enroll-secret"]
  }
}
