# Cloud Monitoring notifies coalmine-alerts through this channel; the Alert
# function acts on the incidents. The alert policies themselves come from
# the policy file's alerts[] (`coalmine alerts`, which cloudbuild.yaml runs):
# the Go code that defines them is the one definition.
resource "google_monitoring_notification_channel" "alerts" {
  project      = var.project_id
  display_name = "coalmine alerts"
  description  = "Cloud Monitoring incidents for coalmine's Alert function."
  type         = "pubsub"
  # The alert policies `coalmine alerts` made still name the channel when
  # Terraform destroys it.
  force_delete = true
  labels = {
    topic = google_pubsub_topic.coalmine[local.alerts_topic].id
  }
  user_labels = {
    managed-by = "coalmine"
  }
}

# Monitoring's notification service agent publishes the incidents.
resource "google_pubsub_topic_iam_member" "monitoring_agent_alerts" {
  project = var.project_id
  topic   = google_pubsub_topic.coalmine[local.alerts_topic].name
  role    = "roles/pubsub.publisher"
  member  = local.monitoring_agent

  depends_on = [google_monitoring_notification_channel.alerts]
}
