# One Cloud Run service per function, all from the one image; FUNCTION_TARGET
# picks the function. Each runs as its own service account (iam.tf), scales
# to zero, and takes requests only with an OIDC token of coalmine-push.

resource "google_service_account" "function" {
  for_each = local.functions

  project      = var.project_id
  account_id   = each.value
  display_name = "coalmine: the ${each.key} function"
}

# The policy, mounted into every function. A new version changes the
# functions' template, so they start new revisions that read it.
resource "google_secret_manager_secret" "policy" {
  project   = var.project_id
  secret_id = "coalmine-policy"
  replication {
    auto {}
  }
}

# A new policy is a new version; the old one is left in place (ABANDON), so
# revisions that mount it still start, and the new version exists before the
# functions move to it.
resource "google_secret_manager_secret_version" "policy" {
  secret          = google_secret_manager_secret.policy.id
  secret_data     = var.policy
  deletion_policy = "ABANDON"

  lifecycle {
    create_before_destroy = true
  }
}

resource "google_cloud_run_v2_service" "function" {
  for_each = var.image == null ? {} : local.functions

  project             = var.project_id
  location            = var.region
  name                = each.value
  deletion_protection = false

  template {
    service_account                  = google_service_account.function[each.key].email
    timeout                          = "${local.function_timeout_seconds}s"
    max_instance_request_concurrency = 10

    scaling {
      min_instance_count = 0
      max_instance_count = var.max_instances
    }

    containers {
      image = var.image

      env {
        name  = "FUNCTION_TARGET"
        value = each.key
      }
      env {
        name  = "CLOUD_RUN_TIMEOUT_SECONDS"
        value = tostring(local.function_timeout_seconds)
      }
      env {
        name  = "COALMINE_PROJECT"
        value = var.project_id
      }
      env {
        name  = "COALMINE_REGION"
        value = local.target_region
      }
      env {
        name  = "COALMINE_SCHEDULER_LOCATION"
        value = local.scheduler_location
      }
      env {
        name  = "COALMINE_POLICY"
        value = local.policy_path
      }
      dynamic "env" {
        for_each = each.key == "Backup" ? var.backup_secret_env : {}
        content {
          name = env.key
          value_source {
            secret_key_ref {
              secret  = env.value
              version = "latest"
            }
          }
        }
      }

      resources {
        limits = {
          cpu    = "1"
          memory = each.key == "Backup" ? "1Gi" : "512Mi"
        }
        cpu_idle = true
      }

      volume_mounts {
        name       = "policy"
        mount_path = dirname(local.policy_path)
      }
      dynamic "volume_mounts" {
        for_each = each.key == "Backup" && length(var.cloudsql_instances) > 0 ? [1] : []
        content {
          name       = "cloudsql"
          mount_path = "/cloudsql"
        }
      }
    }

    volumes {
      name = "policy"
      secret {
        secret = google_secret_manager_secret.policy.secret_id
        items {
          version = google_secret_manager_secret_version.policy.version
          path    = basename(local.policy_path)
        }
      }
    }
    dynamic "volumes" {
      for_each = each.key == "Backup" && length(var.cloudsql_instances) > 0 ? [1] : []
      content {
        name = "cloudsql"
        cloud_sql_instance {
          instances = var.cloudsql_instances
        }
      }
    }
  }

  # Cloud Build deploys new images (cloudbuild.yaml); apply must not undo it.
  lifecycle {
    ignore_changes = [
      template[0].containers[0].image,
      template[0].annotations,
      template[0].labels,
      template[0].revision,
      client,
      client_version,
    ]
  }

  depends_on = [
    google_secret_manager_secret_iam_member.policy,
    google_secret_manager_secret_iam_member.backup_env,
  ]
}
