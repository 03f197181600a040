// What tells whoever is on call that something needs them: one action group that emails the
// address given to azd (PERENNIAL_ALERT_EMAIL), and the alert rules that notify it. main.bicep
// deploys this module only when that address is set. What each alert means and what to do
// first: infra/README.md (Alerts) and docs/operations.md.

@description('Azure region of the log alert rules (the action group and metric alerts are global).')
param location string

@description('Tags applied to every resource.')
param tags object

@description('Action group name.')
param actionGroupName string

@description('Email address the action group notifies.')
@minLength(3)
param alertEmail string

@description('Application Insights component the Function App logs to (the log alerts query its traces).')
param applicationInsightsName string

@description('Function App name (HTTP 5xx).')
param functionAppName string

@description('Perennial\'s custom topic name.')
param customTopicName string

@description('Storage system topic name.')
param storageSystemTopicName string

@description('Azure ML workspace system topic name; empty when there is none.')
param workspaceSystemTopicName string = ''

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

resource functionApp 'Microsoft.Web/sites@2024-04-01' existing = {
  name: functionAppName
}

resource customTopic 'Microsoft.EventGrid/topics@2025-02-15' existing = {
  name: customTopicName
}

resource storageSystemTopic 'Microsoft.EventGrid/systemTopics@2025-02-15' existing = {
  name: storageSystemTopicName
}

resource workspaceSystemTopic 'Microsoft.EventGrid/systemTopics@2025-02-15' existing = if (!empty(workspaceSystemTopicName)) {
  name: empty(workspaceSystemTopicName) ? 'unused' : workspaceSystemTopicName
}

resource actionGroup 'Microsoft.Insights/actionGroups@2023-01-01' = {
  name: actionGroupName
  location: 'global'
  tags: tags
  properties: {
    groupShortName: 'perennial'
    enabled: true
    emailReceivers: [
      {
        name: 'on-call'
        emailAddress: alertEmail
        useCommonAlertSchema: true
      }
    ]
  }
}

// ---------------------------------------------------------------------- log alerts (Application Insights traces)
// The Python worker forwards each log line to the host, which writes it to `traces`: the text in `message`,
// the level in `severityLevel` (2 Warning, 3 Error), and customDimensions.Category 'Function.<name>.User' (the
// Python logger's name, perennial.*, is not kept). Both rules count rows over 15 minutes, every 5 minutes,
// and fire once until a window is clean again (autoMitigate). Query validation is skipped: the component is
// new and empty on a first `azd up`.

// A run that ended badly. finish_run (functions/activities.py) logs a WARNING
// 'run <run_id> of <model> ended <status>: <reasons>' for every run that ends failed, training_failed,
// rolled_back, approval_timed_out, aborted or no_valid_data; this rule takes the first four (aborted was asked
// for; no_valid_data quarantined its data and says so). The housekeeping timer logs a WARNING '<run_id>: closed by housekeeping: <why>; ...'
// (functions/stranded.py) when it records as failed a run that nothing ran any more.
var runEndedBadlyQuery = '''
traces
| where severityLevel >= 2
| where message contains_cs "ended failed"
    or message contains_cs "ended training_failed"
    or message contains_cs "ended rolled_back"
    or message contains_cs "ended approval_timed_out"
    or message contains_cs "closed by housekeeping"
| project timestamp, severityLevel, message, operation_Name
'''

// Anything our functions logged at ERROR or above (logger.exception in an activity, say), and the host's own
// 'Executed ... (Failed ...)' line for an invocation that raised (an activity's exception).
var errorsQuery = '''
traces
| where severityLevel >= 3
| where tostring(customDimensions.Category) startswith "Function."
| project timestamp, severityLevel, message, operation_Name
'''

resource runEndedBadlyAlert 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: 'perennial-run-ended-badly'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: 'Perennial: a run failed or was rolled back'
    description: 'A run ended failed, training_failed, rolled_back or approval_timed_out, or housekeeping closed a stranded run. First: perennial runs <model> (infra/README.md, Alerts; docs/operations.md).'
    severity: 2
    enabled: true
    scopes: [
      applicationInsights.id
    ]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT15M'
    autoMitigate: true
    skipQueryValidation: true
    criteria: {
      allOf: [
        {
          query: runEndedBadlyQuery
          timeAggregation: 'Count'
          operator: 'GreaterThan'
          threshold: 0
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    actions: {
      actionGroups: [
        actionGroup.id
      ]
    }
  }
}

resource errorsAlert 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: 'perennial-errors'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: 'Perennial: errors logged by the functions'
    description: 'Error-level traces from the Function App in the last 15 minutes (an activity raised, or logged an exception). First: open the alert\'s query results (infra/README.md, Alerts; docs/operations.md).'
    severity: 1
    enabled: true
    scopes: [
      applicationInsights.id
    ]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT15M'
    autoMitigate: true
    skipQueryValidation: true
    criteria: {
      allOf: [
        {
          query: errorsQuery
          timeAggregation: 'Count'
          operator: 'GreaterThan'
          threshold: 0
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    actions: {
      actionGroups: [
        actionGroup.id
      ]
    }
  }
}

// ---------------------------------------------------------------------- metric alerts
// Every topic the app is subscribed to (wiring.bicep): the ML workspace's only when it exists. An event that
// Event Grid dead-letters (after 30 attempts over 24 h) or drops never reached its function.
var eventGridTopics = concat([
  {
    key: 'custom'
    id: customTopic.id
    namespace: 'Microsoft.EventGrid/topics'
  }
  {
    key: 'storage'
    id: storageSystemTopic.id
    namespace: 'Microsoft.EventGrid/systemTopics'
  }
], empty(workspaceSystemTopicName) ? [] : [
  {
    key: 'ml'
    id: workspaceSystemTopic.id
    namespace: 'Microsoft.EventGrid/systemTopics'
  }
])

resource deadLetteredAlerts 'Microsoft.Insights/metricAlerts@2018-03-01' = [for topic in eventGridTopics: {
  name: 'perennial-events-dead-lettered-${topic.key}'
  location: 'global'
  tags: tags
  properties: {
    description: 'Event Grid dead-lettered events of this topic in the last hour: they are in the deadletter container, not delivered. First: look there (infra/README.md, Alerts; docs/operations.md).'
    severity: 1
    enabled: true
    scopes: [
      topic.id
    ]
    evaluationFrequency: 'PT15M'
    windowSize: 'PT1H'
    autoMitigate: true
    criteria: {
      'odata.type': 'Microsoft.Azure.Monitor.SingleResourceMultipleMetricCriteria'
      allOf: [
        {
          name: 'deadLettered'
          criterionType: 'StaticThresholdCriterion'
          metricNamespace: topic.namespace
          metricName: 'DeadLetteredCount'
          timeAggregation: 'Total'
          operator: 'GreaterThan'
          threshold: 0
        }
      ]
    }
    actions: [
      {
        actionGroupId: actionGroup.id
      }
    ]
  }
}]

resource droppedAlerts 'Microsoft.Insights/metricAlerts@2018-03-01' = [for topic in eventGridTopics: {
  name: 'perennial-events-dropped-${topic.key}'
  location: 'global'
  tags: tags
  properties: {
    description: 'Event Grid dropped events of this topic in the last hour (not delivered and not dead-lettered either). First: infra/README.md, Alerts; docs/operations.md.'
    severity: 1
    enabled: true
    scopes: [
      topic.id
    ]
    evaluationFrequency: 'PT15M'
    windowSize: 'PT1H'
    autoMitigate: true
    criteria: {
      'odata.type': 'Microsoft.Azure.Monitor.SingleResourceMultipleMetricCriteria'
      allOf: [
        {
          name: 'dropped'
          criterionType: 'StaticThresholdCriterion'
          metricNamespace: topic.namespace
          metricName: 'DroppedEventCount'
          timeAggregation: 'Total'
          operator: 'GreaterThan'
          threshold: 0
        }
      ]
    }
    actions: [
      {
        actionGroupId: actionGroup.id
      }
    ]
  }
}]

resource http5xxAlert 'Microsoft.Insights/metricAlerts@2018-03-01' = {
  name: 'perennial-http-5xx'
  location: 'global'
  tags: tags
  properties: {
    description: 'The Function App answered HTTP 5xx in the last 15 minutes (an API route raised, or the host could not serve). First: infra/README.md, Alerts; docs/operations.md.'
    severity: 2
    enabled: true
    scopes: [
      functionApp.id
    ]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT15M'
    autoMitigate: true
    criteria: {
      'odata.type': 'Microsoft.Azure.Monitor.SingleResourceMultipleMetricCriteria'
      allOf: [
        {
          name: 'http5xx'
          criterionType: 'StaticThresholdCriterion'
          metricNamespace: 'Microsoft.Web/sites'
          metricName: 'Http5xx'
          timeAggregation: 'Total'
          operator: 'GreaterThan'
          threshold: 0
        }
      ]
    }
    actions: [
      {
        actionGroupId: actionGroup.id
      }
    ]
  }
}

output actionGroupId string = actionGroup.id
