# coalmine on one Google Cloud project: the Pub/Sub topics and push
# subscriptions of the chain, one Cloud Run service per function, a service
# account per function with only the roles it needs, the sweep job, the
# Monitoring notification channel, the backup bucket and the policy secret.
# docs/production.md walks through it.
#
# The locals below repeat coalmine's Go constants (events/topology.go,
# events/topics.go, events/tick.go); infra/terraform/terraform_test.go fails
# when they differ, and when a function's service account gets a role that
# docs/production.md's least-privilege table does not list.

data "google_project" "this" {
  project_id = var.project_id
}

locals {
  # FUNCTION_TARGET => Cloud Run service and service account ID.
  functions = {
    Backup   = "coalmine-backup"
    Deploy   = "coalmine-deploy"
    Shift    = "coalmine-shift"
    Rollback = "coalmine-rollback"
    Verify   = "coalmine-verify"
    Alert    = "coalmine-alert"
  }

  # events.Topics. gcr belongs to Artifact Registry: it publishes there when a
  # topic of that name exists.
  topics = [
    "gcr",
    "coalmine-release",
    "coalmine-backup",
    "coalmine-deploy",
    "coalmine-shift",
    "coalmine-rollback",
    "coalmine-ticks",
    "coalmine-alerts",
    "coalmine-events",
    "coalmine-dead-letter",
  ]

  # events.Triggers: subscription ID => the function it pushes to and its topic.
  triggers = {
    "coalmine-backup-gcr"                 = { function = "Backup", topic = "gcr" }
    "coalmine-backup-coalmine-release"    = { function = "Backup", topic = "coalmine-release" }
    "coalmine-backup-coalmine-backup"     = { function = "Backup", topic = "coalmine-backup" }
    "coalmine-deploy-coalmine-deploy"     = { function = "Deploy", topic = "coalmine-deploy" }
    "coalmine-shift-coalmine-shift"       = { function = "Shift", topic = "coalmine-shift" }
    "coalmine-rollback-coalmine-rollback" = { function = "Rollback", topic = "coalmine-rollback" }
    "coalmine-verify-coalmine-ticks"      = { function = "Verify", topic = "coalmine-ticks" }
    "coalmine-alert-coalmine-alerts"      = { function = "Alert", topic = "coalmine-alerts" }
  }

  # Delivery of every trigger subscription (events.AckDeadline, MinBackoff,
  # MaxBackoff, MaxDeliveryAttempts). For a push subscription the ack
  # deadline is also the HTTP timeout, so it must cover function_timeout.
  delivery = {
    ack_deadline_seconds  = 600
    minimum_backoff       = "10s"
    maximum_backoff       = "600s"
    max_delivery_attempts = 10
  }
  # events.FunctionTimeout: each function's Cloud Run request timeout.
  function_timeout_seconds = 540

  dead_letter_topic        = "coalmine-dead-letter"
  dead_letter_subscription = "coalmine-dead-letter"
  events_topic             = "coalmine-events"
  watch_subscription       = "coalmine-events-watch"
  ticks_topic              = "coalmine-ticks"
  alerts_topic             = "coalmine-alerts"

  # events.SweepJob, events.SweepSchedule and events.SweepData().
  sweep = {
    job       = "coalmine-sweep"
    schedule  = "*/10 * * * *"
    time_zone = "Etc/UTC"
    data      = jsonencode({ job = "coalmine-sweep", version = 1 })
  }

  scheduler_location = coalesce(var.scheduler_location, var.region)
  target_region      = coalesce(var.target_region, var.region)
  topic_id           = { for t in local.topics : t => "projects/${var.project_id}/topics/${t}" }
  policy_path        = "/etc/coalmine/policy.yaml"

  # Google-managed service agents of the project.
  pubsub_agent     = "serviceAccount:service-${data.google_project.this.number}@gcp-sa-pubsub.iam.gserviceaccount.com"
  monitoring_agent = "serviceAccount:service-${data.google_project.this.number}@gcp-sa-monitoring-notification.iam.gserviceaccount.com"
}
