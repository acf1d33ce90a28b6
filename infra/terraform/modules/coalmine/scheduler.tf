# The sweep: every 10 minutes a tick with no rollout, on which the Verify
# function re-creates a rollout's lost tick job and deletes leftovers. The
# per-rollout tick jobs are the functions' own (created when a rollout is
# claimed, deleted when it ends), so the project has one job when idle.
resource "google_cloud_scheduler_job" "sweep" {
  project     = var.project_id
  region      = local.scheduler_location
  name        = local.sweep.job
  description = "coalmine: sweep that re-drives rollouts whose tick job was lost"
  schedule    = local.sweep.schedule
  time_zone   = local.sweep.time_zone

  pubsub_target {
    topic_name = google_pubsub_topic.coalmine[local.ticks_topic].id
    data       = base64encode(local.sweep.data)
  }
}
