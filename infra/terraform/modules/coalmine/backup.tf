# The backup bucket: uniform access, never public, and soft delete: an
# object deleted or replaced stays restorable for backup_retention_days.
#
# Not a bucket retention policy (which forbids deleting or replacing an
# object until it is old enough): the Backup function's retries rewrite
# manifest.json, backup.json and database.dump of a backup it is still
# taking, and a retention policy would turn each such retry into a 403 until
# the backup's deadline fails the rollout.
resource "google_storage_bucket" "backups" {
  project                     = var.project_id
  name                        = var.backup_bucket
  location                    = coalesce(var.backup_bucket_location, var.region)
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"

  soft_delete_policy {
    retention_duration_seconds = var.backup_retention_days * 86400
  }
}
