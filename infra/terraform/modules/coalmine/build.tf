# What Cloud Build needs to build, push and deploy coalmine (cloudbuild.yaml):
# the image repository, a staging bucket for the sources and the identity
# the build runs as.
resource "google_artifact_registry_repository" "coalmine" {
  project       = var.project_id
  location      = var.region
  repository_id = "coalmine"
  format        = "DOCKER"
  description   = "coalmine's functions image"

  # Each build pushes an image: keep the five newest and the one tagged
  # deployed (cloudbuild.yaml moves the tag), delete the rest after 30 days.
  cleanup_policy_dry_run = false
  cleanup_policies {
    id     = "delete-old"
    action = "DELETE"
    condition {
      tag_state  = "ANY"
      older_than = "2592000s"
    }
  }
  cleanup_policies {
    id     = "keep-deployed"
    action = "KEEP"
    condition {
      tag_state    = "TAGGED"
      tag_prefixes = ["deployed"]
    }
  }
  cleanup_policies {
    id     = "keep-newest"
    action = "KEEP"
    most_recent_versions {
      keep_count = 5
    }
  }
}

resource "google_storage_bucket" "build" {
  project                     = var.project_id
  name                        = "${var.project_id}-coalmine-build"
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = true

  lifecycle_rule {
    condition {
      age = 7
    }
    action {
      type = "Delete"
    }
  }
}

resource "google_service_account" "deployer" {
  project      = var.project_id
  account_id   = "coalmine-deployer"
  display_name = "coalmine: Cloud Build, which tests, builds and deploys coalmine"
}
