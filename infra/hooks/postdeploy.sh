#!/bin/sh
# azd postdeploy hook: wire Event Grid to the functions that `azd deploy` just published.
# It waits until the Functions host has indexed the two Event Grid functions (an AzureFunction
# destination that does not exist yet fails with "Destination endpoint not found"), then
# deploys infra/wiring.bicep into the environment's resource group. Safe to re-run.
#
# azd runs hooks with the environment's values (main.bicep outputs) in the process
# environment. Needs the Azure CLI, signed in (`az login`) to the same subscription.
set -eu

WAIT_SECONDS="${PERENNIAL_WIRING_WAIT_SECONDS:-300}"
POLL_SECONDS="${PERENNIAL_WIRING_POLL_SECONDS:-10}"
FUNCTIONS="on_blob_created on_alert_event"
HERE="$(cd "$(dirname "$0")" && pwd)"
TEMPLATE="$HERE/../wiring.bicep"

fail() {
  echo "postdeploy: $1" >&2
  exit 1
}

command -v az >/dev/null 2>&1 || fail "the Azure CLI (az) is not installed: install it (https://aka.ms/azcli), run 'az login', then 'azd hooks run postdeploy'"

missing=""
for name in AZURE_RESOURCE_GROUP AZURE_FUNCTION_APP_NAME AZURE_STORAGE_ACCOUNT_NAME \
  EVENTGRID_STORAGE_TOPIC_NAME EVENTGRID_CUSTOM_TOPIC_NAME EVENTGRID_IDENTITY_NAME; do
  eval "value=\${$name:-}"
  [ -n "$value" ] || missing="$missing $name"
done
[ -z "$missing" ] || fail "missing azd environment values:$missing; run 'azd provision' first (they are outputs of infra/main.bicep)"

if [ -n "${AZURE_SUBSCRIPTION_ID:-}" ]; then
  az account set --subscription "$AZURE_SUBSCRIPTION_ID" >/dev/null \
    || fail "cannot select subscription $AZURE_SUBSCRIPTION_ID: run 'az login' with an account that can see it"
fi

echo "postdeploy: waiting for $FUNCTIONS on $AZURE_FUNCTION_APP_NAME (up to ${WAIT_SECONDS}s)"
# Listings to try: one now, then one per poll interval until the wait is used up.
step=$POLL_SECONDS
[ "$step" -ge 1 ] || step=1
tries=$((WAIT_SECONDS / step + 1))
try=1
while :; do
  # Names come back as '<app>/<function>'.
  listed="$(az functionapp function list -g "$AZURE_RESOURCE_GROUP" -n "$AZURE_FUNCTION_APP_NAME" --query "[].name" -o tsv 2>/dev/null || true)"
  absent=""
  for fn in $FUNCTIONS; do
    printf '%s\n' "$listed" | grep -q "/$fn\$" || absent="$absent $fn"
  done
  [ -z "$absent" ] && break
  if [ "$try" -ge "$tries" ]; then
    fail "functions not found after ${WAIT_SECONDS}s:$absent; check the deployment ('az functionapp log deployment show -g $AZURE_RESOURCE_GROUP -n $AZURE_FUNCTION_APP_NAME') and the app's start-up errors in Application Insights, then 'azd hooks run postdeploy'"
  fi
  sleep "$POLL_SECONDS"
  try=$((try + 1))
done

echo "postdeploy: deploying Event Grid subscriptions (infra/wiring.bicep)"
az deployment group create \
  --resource-group "$AZURE_RESOURCE_GROUP" \
  --name perennial-wiring \
  --template-file "$TEMPLATE" \
  --parameters \
  functionAppName="$AZURE_FUNCTION_APP_NAME" \
  storageAccountName="$AZURE_STORAGE_ACCOUNT_NAME" \
  storageSystemTopicName="$EVENTGRID_STORAGE_TOPIC_NAME" \
  customTopicName="$EVENTGRID_CUSTOM_TOPIC_NAME" \
  workspaceSystemTopicName="${EVENTGRID_WORKSPACE_TOPIC_NAME:-}" \
  eventGridIdentityName="$EVENTGRID_IDENTITY_NAME" \
  --output none \
  || fail "the Event Grid wiring deployment failed (see the error above); fix it and run 'azd hooks run postdeploy'"

echo "postdeploy: Event Grid now delivers landing-container blobs to on_blob_created and Perennial/Azure ML events to on_alert_event"
