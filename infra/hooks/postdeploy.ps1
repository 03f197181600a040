# azd postdeploy hook (Windows): the same steps as postdeploy.sh — wait until the Functions
# host lists the Event Grid functions, then deploy infra/wiring.bicep. Safe to re-run.
$ErrorActionPreference = 'Stop'

$waitSeconds = if ($env:PERENNIAL_WIRING_WAIT_SECONDS) { [int]$env:PERENNIAL_WIRING_WAIT_SECONDS } else { 300 }
$pollSeconds = if ($env:PERENNIAL_WIRING_POLL_SECONDS) { [int]$env:PERENNIAL_WIRING_POLL_SECONDS } else { 10 }
$functions = @('on_blob_created', 'on_alert_event')
$template = Join-Path $PSScriptRoot '..' 'wiring.bicep'

function Fail([string]$message) {
  Write-Error "postdeploy: $message"
  exit 1
}

if (-not (Get-Command az -ErrorAction SilentlyContinue)) {
  Fail "the Azure CLI (az) is not installed: install it (https://aka.ms/azcli), run 'az login', then 'azd hooks run postdeploy'"
}

$required = @('AZURE_RESOURCE_GROUP', 'AZURE_FUNCTION_APP_NAME', 'AZURE_STORAGE_ACCOUNT_NAME',
  'EVENTGRID_STORAGE_TOPIC_NAME', 'EVENTGRID_CUSTOM_TOPIC_NAME', 'EVENTGRID_IDENTITY_NAME')
$missing = $required | Where-Object { -not [Environment]::GetEnvironmentVariable($_) }
if ($missing) {
  Fail "missing azd environment values: $($missing -join ' '); run 'azd provision' first (they are outputs of infra/main.bicep)"
}

if ($env:AZURE_SUBSCRIPTION_ID) {
  # A native command's exit code does not stop the script ($ErrorActionPreference is for cmdlets).
  az account set --subscription $env:AZURE_SUBSCRIPTION_ID | Out-Null
  if ($LASTEXITCODE -ne 0) {
    Fail "cannot select subscription $($env:AZURE_SUBSCRIPTION_ID): run 'az login' with an account that can see it"
  }
}

Write-Host "postdeploy: waiting for $($functions -join ', ') on $env:AZURE_FUNCTION_APP_NAME (up to ${waitSeconds}s)"
# Listings to try: one now, then one per poll interval until the wait is used up.
$tries = [math]::Floor($waitSeconds / [math]::Max($pollSeconds, 1)) + 1
$try = 1
while ($true) {
  $listed = @(az functionapp function list -g $env:AZURE_RESOURCE_GROUP -n $env:AZURE_FUNCTION_APP_NAME --query "[].name" -o tsv 2>$null)
  $absent = $functions | Where-Object { $fn = $_; -not ($listed | Where-Object { $_ -like "*/$fn" }) }
  if (-not $absent) { break }
  if ($try -ge $tries) {
    Fail "functions not found after ${waitSeconds}s: $($absent -join ' '); check the deployment and the app's start-up errors in Application Insights, then 'azd hooks run postdeploy'"
  }
  Start-Sleep -Seconds $pollSeconds
  $try += 1
}

Write-Host 'postdeploy: deploying Event Grid subscriptions (infra/wiring.bicep)'
az deployment group create `
  --resource-group $env:AZURE_RESOURCE_GROUP `
  --name perennial-wiring `
  --template-file $template `
  --parameters `
  functionAppName=$env:AZURE_FUNCTION_APP_NAME `
  storageAccountName=$env:AZURE_STORAGE_ACCOUNT_NAME `
  storageSystemTopicName=$env:EVENTGRID_STORAGE_TOPIC_NAME `
  customTopicName=$env:EVENTGRID_CUSTOM_TOPIC_NAME `
  workspaceSystemTopicName="$env:EVENTGRID_WORKSPACE_TOPIC_NAME" `
  eventGridIdentityName=$env:EVENTGRID_IDENTITY_NAME `
  --output none
if ($LASTEXITCODE -ne 0) {
  Fail "the Event Grid wiring deployment failed (see the error above); fix it and run 'azd hooks run postdeploy'"
}
Write-Host 'postdeploy: Event Grid now delivers landing-container blobs to on_blob_created and Perennial/Azure ML events to on_alert_event'
