# The topics of the chain, the push subscriptions that deliver them to the
# functions, and where dead letters and lifecycle events are kept.

resource "google_pubsub_topic" "coalmine" {
  for_each = toset([for t in local.topics : t if t != "gcr" || var.create_gcr_topic])

  project = var.project_id
  name    = each.value
}

# Push, not Eventarc: the subscription is ours, so its ack deadline, retry
# policy and dead-letter policy are declared here (an Eventarc trigger
# creates its own subscription, which then has to be edited by hand). The
# endpoint path carries the topic: functions-framework turns the push body
# into the messagePublished CloudEvent and takes its source from that path.
resource "google_pubsub_subscription" "trigger" {
  for_each = var.image == null ? {} : local.triggers

  project              = var.project_id
  name                 = each.key
  topic                = local.topic_id[each.value.topic]
  ack_deadline_seconds = local.delivery.ack_deadline_seconds

  retry_policy {
    minimum_backoff = local.delivery.minimum_backoff
    maximum_backoff = local.delivery.maximum_backoff
  }

  dead_letter_policy {
    dead_letter_topic     = google_pubsub_topic.coalmine[local.dead_letter_topic].id
    max_delivery_attempts = local.delivery.max_delivery_attempts
  }

  push_config {
    push_endpoint = "${google_cloud_run_v2_service.function[each.value.function].uri}/projects/${var.project_id}/topics/${each.value.topic}"
    oidc_token {
      service_account_email = google_service_account.push.email
      audience              = google_cloud_run_v2_service.function[each.value.function].uri
    }
  }

  message_retention_duration = "604800s"
  expiration_policy {
    ttl = ""
  }

  depends_on = [google_pubsub_topic.coalmine]
}

# Dead letters are kept for a week for `gcloud pubsub subscriptions pull`.
resource "google_pubsub_subscription" "dead_letter" {
  project                    = var.project_id
  name                       = local.dead_letter_subscription
  topic                      = google_pubsub_topic.coalmine[local.dead_letter_topic].id
  ack_deadline_seconds       = 60
  message_retention_duration = "604800s"
  expiration_policy {
    ttl = ""
  }
}

# Lifecycle events for `coalmine watch` and notifications.
resource "google_pubsub_subscription" "watch" {
  project                    = var.project_id
  name                       = local.watch_subscription
  topic                      = google_pubsub_topic.coalmine[local.events_topic].id
  ack_deadline_seconds       = 60
  message_retention_duration = "86400s"
  expiration_policy {
    ttl = ""
  }
}

# The identity Pub/Sub signs push requests as: it may invoke the functions
# and nothing else.
resource "google_service_account" "push" {
  project      = var.project_id
  account_id   = "coalmine-push"
  display_name = "coalmine: Pub/Sub push to the functions"
}

resource "google_cloud_run_v2_service_iam_member" "push_invoker" {
  for_each = google_cloud_run_v2_service.function

  project  = var.project_id
  location = var.region
  name     = each.value.name
  role     = "roles/run.invoker"
  member   = google_service_account.push.member
}

# Pub/Sub's service agent mints the OIDC tokens, forwards dead letters
# (publisher on the dead-letter topic) and acknowledges what it forwarded
# (subscriber on each trigger subscription).
resource "google_service_account_iam_member" "pubsub_agent_token_creator" {
  service_account_id = google_service_account.push.name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = local.pubsub_agent
}

resource "google_pubsub_topic_iam_member" "pubsub_agent_dead_letter" {
  project = var.project_id
  topic   = google_pubsub_topic.coalmine[local.dead_letter_topic].name
  role    = "roles/pubsub.publisher"
  member  = local.pubsub_agent
}

resource "google_pubsub_subscription_iam_member" "pubsub_agent_trigger" {
  for_each = google_pubsub_subscription.trigger

  project      = var.project_id
  subscription = each.value.name
  role         = "roles/pubsub.subscriber"
  member       = local.pubsub_agent
}
