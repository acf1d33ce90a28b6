output "image_repository" {
  description = "Where Cloud Build pushes the functions image."
  value       = "${google_artifact_registry_repository.coalmine.location}-docker.pkg.dev/${var.project_id}/${google_artifact_registry_repository.coalmine.repository_id}/functions"
}

output "deployer" {
  description = "The service account Cloud Build runs as (gcloud builds submit --service-account)."
  value       = google_service_account.deployer.id
}

output "build_staging" {
  description = "Where gcloud builds submit stages the sources (--gcs-source-staging-dir)."
  value       = "${google_storage_bucket.build.url}/source"
}

output "function_service_accounts" {
  description = "Each function's service account email."
  value       = { for fn, sa in google_service_account.function : fn => sa.email }
}

output "function_urls" {
  description = "Each function's Cloud Run URL (empty before the first image)."
  value       = { for fn, svc in google_cloud_run_v2_service.function : fn => svc.uri }
}

output "notification_channel" {
  description = "The Monitoring channel that notifies coalmine-alerts."
  value       = google_monitoring_notification_channel.alerts.id
}

output "backup_bucket" {
  description = "The backup bucket's name."
  value       = google_storage_bucket.backups.name
}
