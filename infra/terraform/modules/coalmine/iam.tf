# Least privilege: each function runs as its own service account with only
# what its code calls (docs/production.md has the table, each Google API
# method mapped to its permission; infra/terraform/terraform_test.go checks
# that this file grants exactly the table's roles). No basic roles.

locals {
  # run.operations.get is checked on the location's operations, so it is
  # project-wide; reading and updating services is granted on the released
  # services only (coalmineServiceWriter).
  run_write = ["run.operations.get"]
  tick_jobs = [
    "cloudscheduler.jobs.create",
    "cloudscheduler.jobs.get",
    "cloudscheduler.jobs.update",
    "cloudscheduler.jobs.enable",
    "cloudscheduler.jobs.delete",
    "cloudscheduler.jobs.fullView",
  ]

  # Each function's project-wide permissions, as one custom role each.
  function_permissions = {
    Backup = concat(local.run_write, ["run.revisions.get"], local.tick_jobs,
    ["cloudsql.instances.get", "cloudsql.instances.export", "cloudsql.instances.connect"])
    Deploy   = concat(local.run_write, ["run.revisions.get", "cloudscheduler.jobs.delete"])
    Shift    = concat(local.run_write, ["run.revisions.get", "cloudscheduler.jobs.delete"])
    Rollback = concat(local.run_write, local.tick_jobs)
    Verify   = concat(local.run_write, local.tick_jobs, ["cloudscheduler.jobs.list", "monitoring.timeSeries.list"])
    Alert    = concat(local.run_write, ["cloudscheduler.jobs.delete"])
  }

  # The topics each function publishes to (commands by type, lifecycle
  # events, queued releases).
  publishes = {
    Backup   = ["coalmine-release", "coalmine-backup", "coalmine-deploy", "coalmine-rollback", "coalmine-events"]
    Deploy   = ["coalmine-release", "coalmine-shift", "coalmine-events"]
    Shift    = ["coalmine-release", "coalmine-backup", "coalmine-deploy", "coalmine-events"]
    Rollback = ["coalmine-release", "coalmine-events"]
    Verify   = ["coalmine-release", "coalmine-backup", "coalmine-deploy", "coalmine-shift", "coalmine-rollback", "coalmine-events"]
    Alert    = ["coalmine-release", "coalmine-shift", "coalmine-rollback", "coalmine-events"]
  }
  publish_grants = {
    for p in flatten([for fn, topics in local.publishes : [for t in topics : { function = fn, topic = t }]]) :
    "${p.function}/${p.topic}" => p
  }
  act_as = {
    for p in setproduct(keys(local.functions), distinct(var.target_service_accounts)) : "${p[0]}/${p[1]}" => { function = p[0], account = p[1] }
  }
  service_writers = {
    for p in setproduct(keys(local.functions), distinct(var.target_services)) : "${p[0]}/${p[1]}" => { function = p[0], service = p[1] }
  }
}

resource "google_project_iam_custom_role" "function" {
  for_each = local.functions

  project     = var.project_id
  role_id     = "coalmine${each.key}"
  title       = "coalmine ${each.key} function"
  description = "What coalmine's ${each.key} function calls project-wide (docs/production.md)."
  permissions = local.function_permissions[each.key]
}

resource "google_project_iam_member" "function" {
  for_each = local.functions

  project = var.project_id
  role    = google_project_iam_custom_role.function[each.key].id
  member  = google_service_account.function[each.key].member
}

# Every function reads the released services and writes rollout state,
# traffic and templates to them; no other service of the project.
resource "google_project_iam_custom_role" "service_writer" {
  project     = var.project_id
  role_id     = "coalmineServiceWriter"
  title       = "coalmine: read and update a released service"
  description = "Granted on each released Cloud Run service to each coalmine function (docs/production.md)."
  permissions = ["run.services.get", "run.services.update"]
}

resource "google_cloud_run_v2_service_iam_member" "service_writer" {
  for_each = local.service_writers

  project  = var.project_id
  location = local.target_region
  name     = each.value.service
  role     = google_project_iam_custom_role.service_writer.id
  member   = google_service_account.function[each.value.function].member
}

resource "google_pubsub_topic_iam_member" "publish" {
  for_each = local.publish_grants

  project = var.project_id
  topic   = google_pubsub_topic.coalmine[each.value.topic].name
  role    = "roles/pubsub.publisher"
  member  = google_service_account.function[each.value.function].member
}

# Every function writes rollout state to the released services, and Cloud
# Run checks actAs on the account a service runs as at each update.
resource "google_service_account_iam_member" "act_as" {
  for_each = local.act_as

  service_account_id = "projects/-/serviceAccounts/${each.value.account}"
  role               = "roles/iam.serviceAccountUser"
  member             = google_service_account.function[each.value.function].member
}

resource "google_secret_manager_secret_iam_member" "policy" {
  for_each = local.functions

  project   = var.project_id
  secret_id = google_secret_manager_secret.policy.secret_id
  role      = "roles/secretmanager.secretAccessor"
  member    = google_service_account.function[each.key].member
}

# Backup: read the source buckets, write and read back the backups, check
# released images, read its database URL.
resource "google_storage_bucket_iam_member" "backup_sources" {
  for_each = toset(var.backup_source_buckets)

  bucket = each.value
  role   = "roles/storage.objectViewer"
  member = google_service_account.function["Backup"].member
}

resource "google_storage_bucket_iam_member" "backup_target" {
  bucket = google_storage_bucket.backups.name
  role   = "roles/storage.objectUser"
  member = google_service_account.function["Backup"].member
}

resource "google_artifact_registry_repository_iam_member" "release_images" {
  for_each = { for r in var.release_repositories : "${r.location}/${r.repository}" => r }

  project    = var.project_id
  location   = each.value.location
  repository = each.value.repository
  role       = "roles/artifactregistry.reader"
  member     = google_service_account.function["Backup"].member
}

resource "google_secret_manager_secret_iam_member" "backup_env" {
  for_each = toset(values(var.backup_secret_env))

  project   = var.project_id
  secret_id = each.value
  role      = "roles/secretmanager.secretAccessor"
  member    = google_service_account.function["Backup"].member
}

# Cloud SQL writes its exports itself, as the instance's service account.
resource "google_storage_bucket_iam_member" "cloudsql_export" {
  for_each = toset(var.cloudsql_service_accounts)

  bucket = google_storage_bucket.backups.name
  role   = "roles/storage.objectCreator"
  member = "serviceAccount:${each.value}"
}

resource "google_storage_bucket_iam_member" "cloudsql_import" {
  for_each = toset(var.cloudsql_service_accounts)

  bucket = google_storage_bucket.backups.name
  role   = "roles/storage.objectViewer"
  member = "serviceAccount:${each.value}"
}

# Rollback calls the policy's rollback hook on the released service with
# an ID token.
resource "google_cloud_run_v2_service_iam_member" "hook" {
  for_each = toset(var.target_services)

  project  = var.project_id
  location = local.target_region
  name     = each.value
  role     = "roles/run.invoker"
  member   = google_service_account.function["Rollback"].member
}

# Cloud Build (cloudbuild.yaml) as coalmine-deployer: push the image,
# deploy it to the functions, create the alert policies, write its logs.
resource "google_artifact_registry_repository_iam_member" "deployer" {
  project    = var.project_id
  location   = google_artifact_registry_repository.coalmine.location
  repository = google_artifact_registry_repository.coalmine.name
  role       = "roles/artifactregistry.writer"
  member     = google_service_account.deployer.member
}

resource "google_cloud_run_v2_service_iam_member" "deployer" {
  for_each = google_cloud_run_v2_service.function

  project  = var.project_id
  location = var.region
  name     = each.value.name
  role     = "roles/run.developer"
  member   = google_service_account.deployer.member
}

resource "google_service_account_iam_member" "deployer_act_as" {
  for_each = local.functions

  service_account_id = google_service_account.function[each.key].name
  role               = "roles/iam.serviceAccountUser"
  member             = google_service_account.deployer.member
}

resource "google_project_iam_member" "deployer" {
  for_each = toset([
    "roles/monitoring.alertPolicyEditor",
    "roles/monitoring.notificationChannelViewer",
    "roles/logging.logWriter",
  ])

  project = var.project_id
  role    = each.value
  member  = google_service_account.deployer.member
}

resource "google_secret_manager_secret_iam_member" "deployer_policy" {
  project   = var.project_id
  secret_id = google_secret_manager_secret.policy.secret_id
  role      = "roles/secretmanager.secretAccessor"
  member    = google_service_account.deployer.member
}

resource "google_storage_bucket_iam_member" "deployer_sources" {
  bucket = google_storage_bucket.build.name
  role   = "roles/storage.objectViewer"
  member = google_service_account.deployer.member
}
