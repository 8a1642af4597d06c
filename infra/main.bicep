// amlevents — infrastructure for the Function App and its Event Grid wiring.
//
// Deploy into the resource group that holds the Azure ML workspace (and, for retraining, the
// Data Factory): `az deployment group create -g <rg> -f infra/main.bicep -p @infra/main.parameters.json`.
// docs/deploying.md has the full sequence.
//
// What it creates:
//   - a storage account: the app's AzureWebJobsStorage (identity-based, shared keys off), the
//     Flex Consumption deployment container, the Event Grid dead-letter container(s) and the
//     ledger table (AMLEVENTS_LEDGER=table);
//   - Log Analytics + Application Insights (local auth off: the app sends telemetry with its identity);
//   - a Flex Consumption plan (FC1) and a Linux Function App, Python 3.11, running as a
//     user-assigned managed identity (AZURE_CLIENT_ID makes DefaultAzureCredential pick it);
//   - role assignments for that identity: AzureML Data Scientist on the workspace, Data Factory
//     Contributor on the factory, Storage Blob Data Owner + Storage Table Data Contributor on the
//     storage account, Monitoring Metrics Publisher on Application Insights;
//   - the workspace's Event Grid system topic, in the workspace's region (modules/system-topic.bicep;
//     system-assigned identity, Storage Blob Data Contributor on the storage account for
//     dead-lettering) and one event subscription per entry of infra/subscriptions.json — the same
//     file the local simulator reads — to the app's functions, a webhook, an Event Hub, a Service
//     Bus queue or topic, or a Storage queue (identity-based deliveries get the topic's identity
//     the destination's data sender role: modules/destination-role.bicep);
//   - with createOutcomeTopic=true, amlevents' outcome topic (a CloudEvents custom topic, local
//     auth off), EventGrid Data Sender on it for the app's identity, its endpoint in
//     AMLEVENTS_OUTCOME_TOPIC_ENDPOINT, and the file's subscriptions whose `topic` is `outcomes`.
//   - with alertEmail set, an action group that emails it, a log alert on `failed` and `retry`
//     outcomes (Application Insights customMetrics `amlevents.events`, dimension
//     `amlevents.outcome`: handlers/runtime/telemetry.py) and a metric alert on the system topic's
//     dead-lettered events (`DeadLetteredCount`); none of the three when it is empty.
//
// Placeholders: a destination's endpointUrl or resourceId may be `{name}` in the file; its value
// comes from the secure subscriptionValues parameter (per-environment ids, webhook URLs with keys).
// A subscription whose placeholder has no value is not deployed (output skippedSubscriptionNames).
//
// Two-phase first deployment: Event Grid checks that an AzureFunction destination exists when the
// subscription is created ("Destination endpoint not found" otherwise), so the very first run uses
// deployEventSubscriptions=false, then the code is published, then the template runs again
// (infra/deploy_subscriptions.py waits until the functions are listed and retries).
// ARM's incremental mode never deletes: a subscription removed from (or renamed in) the file would
// keep running. infra/deploy_subscriptions.py deletes the `amlevents`-labelled subscriptions of
// the two topics that this deployment did not create (outputs *SubscriptionNames).
//
// NOT COMPILED HERE: the Bicep CLI downloads a native binary, which the build machines cannot do.
// The syntax and API versions were checked by hand against the Microsoft.Web, Microsoft.EventGrid,
// Microsoft.Storage and Microsoft.Insights template references; run `az bicep build -f infra/main.bicep` (or
// `az deployment group what-if`) before the first deployment. tests/infra/test_infra.py checks
// what can be checked without it.

targetScope = 'resourceGroup'

// ---------------------------------------------------------------------------------------------
// Parameters
// ---------------------------------------------------------------------------------------------

@description('Region of the app and its resources. Must offer Flex Consumption: `az functionapp list-flexconsumption-locations`.')
param location string = resourceGroup().location

@description('Prefix of generated resource names.')
@minLength(2)
@maxLength(12)
param baseName string = 'amlevents'

@description('Name of the existing Azure Machine Learning workspace (in this resource group) whose events the app acts on.')
param workspaceName string

@description('Region of the workspace, where its Event Grid system topic must live; empty = read from the workspace itself.')
param workspaceLocation string = ''

@description('Name of the workspace\'s Event Grid system topic. A workspace has at most one: if it already has one, give its name here.')
param systemTopicName string = '${workspaceName}-events'

@description('Name of the existing Data Factory (in this resource group) that runs retraining pipelines; empty = no role assignment.')
param dataFactoryName string = ''

@description('Create the Event Grid subscriptions. Use false on the very first deployment (before the code is published).')
param deployEventSubscriptions bool = true

@description('Create amlevents\' outcome topic (amlevents.* CloudEvents) and let the app publish to it.')
param createOutcomeTopic bool = false

@description('Name of the outcome topic (a custom topic; globally unique: <name>.<region>-1.eventgrid.azure.net).')
param outcomeTopicName string = '${baseName}-outcomes-${uniqueString(resourceGroup().id)}'

@description('AMLEVENTS_OUTCOME_PUBLISH_DRY_RUN: publish the outcomes of a dry run (as *Planned, dryRun true) to the outcome topic.')
@allowed(['true', 'false'])
param publishDryRunOutcomes string = 'false'

@description('Values of the `{name}` placeholders of infra/subscriptions.json (e.g. eventHubId, outcomeWebhookUrl). Secure: webhook URLs may carry keys.')
@secure()
param subscriptionValues object = {}

@description('Function App name (globally unique: <name>.azurewebsites.net).')
param functionAppName string = '${baseName}-${uniqueString(resourceGroup().id)}'

@description('Storage account name (3-24 lower-case letters and digits, globally unique).')
@minLength(3)
@maxLength(24)
param storageAccountName string = take('st${toLower(replace(baseName, '-', ''))}${uniqueString(resourceGroup().id)}', 24)

@description('Python version of the Flex Consumption runtime.')
@allowed(['3.10', '3.11', '3.12'])
param pythonVersion string = '3.11'

@description('Flex Consumption: upper bound of instances (bounds spending and ledger contention).')
param maximumInstanceCount int = 100

@description('Flex Consumption: memory per instance, in MB.')
@allowed([512, 2048, 4096])
param instanceMemoryMB int = 2048

// App settings with the names of local.settings.sample.json. Values default to the safe ones:
// dry-run on, the workspace's own topic allowed, the shared ledger in Table Storage.
@description('AMLEVENTS_ALLOWED_TOPICS; empty = the workspace resource id.')
param allowedTopics string = ''

@description('AMLEVENTS_DRY_RUN: record plans instead of acting. Turn off once the plans look right.')
@allowed(['true', 'false'])
param dryRun string = 'true'

@description('AMLEVENTS_DRY_RUN_DEPLOY; empty = AMLEVENTS_DRY_RUN.')
@allowed(['', 'true', 'false'])
param dryRunDeploy string = ''

@description('AMLEVENTS_DRY_RUN_RETRAIN; empty = AMLEVENTS_DRY_RUN.')
@allowed(['', 'true', 'false'])
param dryRunRetrain string = ''

@description('AMLEVENTS_DRY_RUN_NOTIFY; empty = AMLEVENTS_DRY_RUN.')
@allowed(['', 'true', 'false'])
param dryRunNotify string = ''

@description('AMLEVENTS_LEDGER: table (shared by every instance) or sqlite (one instance only, /tmp).')
@allowed(['table', 'sqlite'])
param ledger string = 'table'

@description('AMLEVENTS_CLAIM_TIMEOUT_S')
param claimTimeoutSeconds string = '600'

@description('AMLEVENTS_DRIFT_THRESHOLD')
param driftThreshold string = '0.3'

@description('AMLEVENTS_NOTIFY_RUN_STATUSES')
param notifyRunStatuses string = 'failed'

@description('AMLEVENTS_NOTIFY_RUN_COMPLETED')
@allowed(['true', 'false'])
param notifyRunCompleted string = 'false'

@description('AMLEVENTS_NOTIFY_MODEL_DEPLOYED')
@allowed(['true', 'false'])
param notifyModelDeployed string = 'false'

@description('Any other app settings (deployment guardrails, retraining routes, notification channels), by their README names. Secure: values never appear in the deployment history. Prefer Key Vault references for secrets.')
@secure()
param extraAppSettings object = {}

@description('Email address for alerts: failed or retried events (Application Insights) and dead-lettered events (the system topic). Empty = no alerts.')
param alertEmail string = ''

@description('Tags applied to every resource created here.')
param tags object = {}

// ---------------------------------------------------------------------------------------------
// Variables
// ---------------------------------------------------------------------------------------------

// Built-in role definition ids (https://learn.microsoft.com/azure/role-based-access-control/built-in-roles).
var roles = {
  azureMLDataScientist: 'f6c7c914-8db3-469d-8ca1-694a8f32e121'
  dataFactoryContributor: '673868aa-7521-48a0-acc6-0f60742d39f5'
  storageBlobDataOwner: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
  storageBlobDataContributor: 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'
  storageTableDataContributor: '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
  monitoringMetricsPublisher: '3913510d-42f4-4e42-8a64-420c390055eb'
  eventGridDataSender: 'd5a91429-5739-47e2-a06b-3470a27159e7'
}

// The one subscriptions file, shared with the local simulator (amlevents/simulator). Its items
// differ in shape (optional batching, filters), hence any(): every field is read with `.?` and a
// default equal to Event Grid's own.
var subscriptionsFile = loadJsonContent('subscriptions.json')
var eventSubscriptions = any(subscriptionsFile).subscriptions
var deadLetterContainers = union(
  map(filter(eventSubscriptions, s => s.?deadLetter != null), s => string(s.deadLetter.blobContainerName)),
  []
)

// Each subscription with its destination resolved (`target`): placeholders replaced, batching
// spread into a WebHook's properties. `function` entries are built in subscriptionProperties.
var resolvedSubscriptions = map(eventSubscriptions, s => union(s, {
  target: s.?function != null ? { properties: {} } : destinationOf(s.?destination ?? s.?deliveryWithResourceIdentity.?destination, subscriptionValues, s.?batching ?? {})
}))
// A placeholder without a value resolves to '': that subscription is not deployed.
var deployableSubscriptions = filter(resolvedSubscriptions, s => s.?function != null || ((s.target.properties.?endpointUrl ?? '-') != '' && (s.target.properties.?resourceId ?? '-') != ''))
var deployableNames = map(deployableSubscriptions, s => string(s.name))
var skippedSubscriptionNames = map(filter(eventSubscriptions, s => !contains(deployableNames, string(s.name))), s => string(s.name))
var workspaceSubscriptions = filter(deployableSubscriptions, s => (s.?topic ?? 'workspace') == 'workspace')
var outcomeSubscriptions = filter(deployableSubscriptions, s => s.?topic == 'outcomes')
// Identity-based deliveries: the topic's identity gets the destination's data sender role.
var workspaceIdentityDeliveries = filter(workspaceSubscriptions, s => s.?deliveryWithResourceIdentity != null)
var outcomeIdentityDeliveries = filter(outcomeSubscriptions, s => s.?deliveryWithResourceIdentity != null)

// Flex Consumption pulls the app package from this container.
var deploymentContainerName = 'app-package'
// handlers/ledger_table_settings.py DEFAULT_TABLE_NAME (the app also creates it when missing).
var ledgerTableName = 'amleventsledger'

// Platform settings: identity-based host storage, telemetry, the identity for DefaultAzureCredential.
// Flex Consumption rejects FUNCTIONS_WORKER_RUNTIME / FUNCTIONS_EXTENSION_VERSION (the runtime is
// functionAppConfig.runtime below), and `AzureWebJobsStorage` as a connection string is replaced by
// the AzureWebJobsStorage__* identity-based keys.
var platformSettings = {
  AzureWebJobsStorage__accountName: storage.name
  AzureWebJobsStorage__credential: 'managedidentity'
  AzureWebJobsStorage__clientId: appIdentity.properties.clientId
  AZURE_CLIENT_ID: appIdentity.properties.clientId
  APPLICATIONINSIGHTS_CONNECTION_STRING: appInsights.properties.ConnectionString
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${appIdentity.properties.clientId};Authorization=AAD'
}

// ---------------------------------------------------------------------------------------------
// Functions (the subscriptions file's shapes -> ARM's)
// ---------------------------------------------------------------------------------------------

// `{name}` -> subscriptionValues.name ('' when it has no value); any other value as is.
func resolve(value string, values object) string => startsWith(value, '{') && endsWith(value, '}') ? (values[?substring(value, 1, length(value) - 2)] ?? '') : value

// ARM's destination from the file's: placeholders resolved, a WebHook's batching in its properties.
func destinationOf(raw object, values object, batching object) object => union(raw, {
  properties: union(
    raw.properties,
    contains(raw.properties, 'endpointUrl') ? { endpointUrl: resolve(raw.properties.endpointUrl, values) } : {},
    contains(raw.properties, 'resourceId') ? { resourceId: resolve(raw.properties.resourceId, values) } : {},
    raw.endpointType == 'WebHook' ? {
      maxEventsPerBatch: batching.?maxEventsPerBatch ?? 1
      preferredBatchSizeInKilobytes: batching.?preferredBatchSizeInKilobytes ?? 64
    } : {}
  )
})

// ARM's eventSubscription properties for one (resolved) entry of the file; Event Grid's own
// defaults where the file says nothing.
func subscriptionProperties(sub object, functionAppId string, storageId string) object => {
  destination: sub.?deliveryWithResourceIdentity != null ? null : (sub.?function != null ? {
    endpointType: 'AzureFunction'
    properties: {
      resourceId: '${functionAppId}/functions/${sub.function}'
      maxEventsPerBatch: sub.?batching.?maxEventsPerBatch ?? 1
      preferredBatchSizeInKilobytes: sub.?batching.?preferredBatchSizeInKilobytes ?? 64
    }
  } : sub.target)
  deliveryWithResourceIdentity: sub.?deliveryWithResourceIdentity == null ? null : {
    identity: {
      type: 'SystemAssigned'
    }
    destination: sub.target
  }
  eventDeliverySchema: sub.?eventDeliverySchema ?? 'EventGridSchema'
  filter: {
    includedEventTypes: sub.?filter.?includedEventTypes // null = every event type
    subjectBeginsWith: sub.?filter.?subjectBeginsWith ?? ''
    subjectEndsWith: sub.?filter.?subjectEndsWith ?? ''
    isSubjectCaseSensitive: sub.?filter.?isSubjectCaseSensitive ?? false
    enableAdvancedFilteringOnArrays: sub.?filter.?enableAdvancedFilteringOnArrays ?? false
    advancedFilters: sub.?filter.?advancedFilters ?? [] // ARM's AdvancedFilter shape, as in the file
  }
  retryPolicy: {
    maxDeliveryAttempts: sub.?retryPolicy.?maxDeliveryAttempts ?? 30
    eventTimeToLiveInMinutes: sub.?retryPolicy.?eventTimeToLiveInMinutes ?? 1440
  }
  deadLetterWithResourceIdentity: sub.?deadLetter == null ? null : {
    identity: {
      type: 'SystemAssigned'
    }
    deadLetterDestination: {
      endpointType: 'StorageBlob'
      properties: {
        resourceId: storageId
        blobContainerName: sub.deadLetter.blobContainerName
      }
    }
  }
  labels: [
    'amlevents' // deploy_subscriptions.py deletes labelled subscriptions that are not in the file
  ]
}

// amlevents settings, named exactly as in local.settings.sample.json (tests/infra checks it).
// AMLEVENTS_HOST_KEY is for the local host only; the Functions host has its own keys.
var amleventsSettings = {
  AMLEVENTS_ALLOWED_TOPICS: empty(allowedTopics) ? workspace.id : allowedTopics
  AMLEVENTS_DRY_RUN: dryRun
  AMLEVENTS_DRY_RUN_DEPLOY: dryRunDeploy
  AMLEVENTS_DRY_RUN_RETRAIN: dryRunRetrain
  AMLEVENTS_DRY_RUN_NOTIFY: dryRunNotify
  AMLEVENTS_LEDGER: ledger
  AMLEVENTS_LEDGER_PATH: '/tmp/amlevents/ledger.sqlite3'
  AMLEVENTS_CLAIM_TIMEOUT_S: claimTimeoutSeconds
  AMLEVENTS_DRIFT_THRESHOLD: driftThreshold
  AMLEVENTS_NOTIFY_RUN_STATUSES: notifyRunStatuses
  AMLEVENTS_NOTIFY_RUN_COMPLETED: notifyRunCompleted
  AMLEVENTS_NOTIFY_MODEL_DEPLOYED: notifyModelDeployed
  // The outcome topic: off ('') unless created here; the app signs in with its identity.
  AMLEVENTS_OUTCOME_TOPIC_ENDPOINT: createOutcomeTopic ? outcomeTopic.properties.endpoint : ''
  AMLEVENTS_OUTCOME_SOURCE: functionApp.id
  AMLEVENTS_OUTCOME_PUBLISH_DRY_RUN: publishDryRunOutcomes
}

// ---------------------------------------------------------------------------------------------
// Existing resources
// ---------------------------------------------------------------------------------------------

resource workspace 'Microsoft.MachineLearningServices/workspaces@2024-04-01' existing = {
  name: workspaceName
}

// A placeholder name keeps the (unused) reference valid when no factory is given.
resource dataFactory 'Microsoft.DataFactory/factories@2018-06-01' existing = {
  name: empty(dataFactoryName) ? 'no-factory' : dataFactoryName
}

// ---------------------------------------------------------------------------------------------
// Identity, storage, monitoring
// ---------------------------------------------------------------------------------------------

resource appIdentity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: 'id-${functionAppName}'
  location: location
  tags: tags
}

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: storageAccountName
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: 'Standard_LRS'
  }
  properties: {
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    allowBlobPublicAccess: false
    allowSharedKeyAccess: false // everything here authenticates with Entra ID
    defaultToOAuthAuthentication: true
    networkAcls: {
      defaultAction: 'Allow'
      bypass: 'AzureServices'
    }
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

resource deploymentContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: deploymentContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource deadLetterContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = [
  for containerName in deadLetterContainers: {
    parent: blobService
    name: containerName
    properties: {
      publicAccess: 'None'
    }
  }
]

resource tableService 'Microsoft.Storage/storageAccounts/tableServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

resource ledgerTable 'Microsoft.Storage/storageAccounts/tableServices/tables@2023-05-01' = {
  parent: tableService
  name: ledgerTableName
}

resource logAnalytics 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: 'log-${functionAppName}'
  location: location
  tags: tags
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    retentionInDays: 30
  }
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: 'appi-${functionAppName}'
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: logAnalytics.id
    DisableLocalAuth: true
  }
}

// ---------------------------------------------------------------------------------------------
// Function App (Flex Consumption)
// ---------------------------------------------------------------------------------------------

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: 'plan-${functionAppName}'
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    tier: 'FlexConsumption'
    name: 'FC1'
  }
  properties: {
    reserved: true // Linux
  }
}

resource functionApp 'Microsoft.Web/sites@2024-04-01' = {
  name: functionAppName
  location: location
  tags: tags
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${appIdentity.id}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    siteConfig: {
      minTlsVersion: '1.2'
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storage.properties.primaryEndpoints.blob}${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: appIdentity.id
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
      }
      runtime: {
        name: 'python'
        version: pythonVersion
      }
    }
  }
  // The host reads its storage with the identity: grant it before the first start.
  dependsOn: [
    deploymentContainer
    storageBlobOwner
  ]
}

resource functionAppSettings 'Microsoft.Web/sites/config@2024-04-01' = {
  parent: functionApp
  name: 'appsettings'
  properties: union(platformSettings, amleventsSettings, extraAppSettings)
  dependsOn: [
    storageTableContributor
    metricsPublisher
  ]
}

// ---------------------------------------------------------------------------------------------
// Role assignments of the app's identity
// ---------------------------------------------------------------------------------------------

resource storageBlobOwner 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, appIdentity.id, roles.storageBlobDataOwner)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataOwner)
    principalId: appIdentity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

resource storageTableContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, appIdentity.id, roles.storageTableDataContributor)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageTableDataContributor)
    principalId: appIdentity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

resource metricsPublisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(appInsights.id, appIdentity.id, roles.monitoringMetricsPublisher)
  scope: appInsights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.monitoringMetricsPublisher)
    principalId: appIdentity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

resource workspaceDataScientist 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(workspace.id, appIdentity.id, roles.azureMLDataScientist)
  scope: workspace
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.azureMLDataScientist)
    principalId: appIdentity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

resource factoryContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(dataFactoryName)) {
  name: guid(dataFactory.id, appIdentity.id, roles.dataFactoryContributor)
  scope: dataFactory
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.dataFactoryContributor)
    principalId: appIdentity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

// ---------------------------------------------------------------------------------------------
// Event Grid: the workspace's system topic and the subscriptions of infra/subscriptions.json
// ---------------------------------------------------------------------------------------------

module systemTopicDeployment 'modules/system-topic.bicep' = {
  name: 'amlevents-system-topic'
  params: {
    name: systemTopicName
    location: empty(workspaceLocation) ? workspace.location : workspaceLocation
    workspaceId: workspace.id
    tags: tags
  }
}

// The module's topic, as the subscriptions' parent (they depend on the module).
resource systemTopic 'Microsoft.EventGrid/systemTopics@2025-02-15' existing = {
  name: systemTopicName
}

resource deadLetterWriter 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, systemTopic.id, roles.storageBlobDataContributor)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataContributor)
    principalId: systemTopicDeployment.outputs.principalId
    principalType: 'ServicePrincipal'
  }
}

module workspaceDestinationRoles 'modules/destination-role.bicep' = [
  for sub in workspaceIdentityDeliveries: if (deployEventSubscriptions) {
    name: 'amlevents-role-${uniqueString(systemTopic.id, sub.name)}'
    scope: resourceGroup(split(sub.target.properties.resourceId, '/')[2], split(sub.target.properties.resourceId, '/')[4])
    params: {
      principalId: systemTopicDeployment.outputs.principalId
      topicId: systemTopic.id
      endpointType: sub.target.endpointType
      destinationId: sub.target.properties.resourceId
    }
  }
]

resource topicSubscriptions 'Microsoft.EventGrid/systemTopics/eventSubscriptions@2025-02-15' = [
  for sub in workspaceSubscriptions: if (deployEventSubscriptions) {
    parent: systemTopic
    name: sub.name
    properties: subscriptionProperties(sub, functionApp.id, storage.id)
    dependsOn: [
      systemTopicDeployment
      functionAppSettings
      deadLetterContainer
      deadLetterWriter
      workspaceDestinationRoles
    ]
  }
]

// ---------------------------------------------------------------------------------------------
// The outcome topic (amlevents.* CloudEvents) and the subscriptions whose `topic` is `outcomes`
// ---------------------------------------------------------------------------------------------

resource outcomeTopic 'Microsoft.EventGrid/topics@2025-02-15' = if (createOutcomeTopic) {
  name: outcomeTopicName
  location: location
  tags: tags
  identity: {
    type: 'SystemAssigned' // dead letters and identity-based deliveries
  }
  properties: {
    inputSchema: 'CloudEventSchemaV1_0'
    disableLocalAuth: true // Entra ID only: the app publishes with its managed identity
    publicNetworkAccess: 'Enabled'
  }
}

resource outcomeSender 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (createOutcomeTopic) {
  name: guid(outcomeTopic.id, appIdentity.id, roles.eventGridDataSender)
  scope: outcomeTopic
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.eventGridDataSender)
    principalId: appIdentity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

resource outcomeDeadLetterWriter 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (createOutcomeTopic) {
  name: guid(storage.id, outcomeTopic.id, roles.storageBlobDataContributor)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataContributor)
    principalId: outcomeTopic.identity.principalId
    principalType: 'ServicePrincipal'
  }
}

module outcomeDestinationRoles 'modules/destination-role.bicep' = [
  for sub in outcomeIdentityDeliveries: if (deployEventSubscriptions && createOutcomeTopic) {
    name: 'amlevents-role-${uniqueString(outcomeTopicName, sub.name)}'
    scope: resourceGroup(split(sub.target.properties.resourceId, '/')[2], split(sub.target.properties.resourceId, '/')[4])
    params: {
      principalId: outcomeTopic.identity.principalId
      topicId: outcomeTopic.id
      endpointType: sub.target.endpointType
      destinationId: sub.target.properties.resourceId
    }
  }
]

resource outcomeTopicSubscriptions 'Microsoft.EventGrid/topics/eventSubscriptions@2025-02-15' = [
  for sub in outcomeSubscriptions: if (deployEventSubscriptions && createOutcomeTopic) {
    parent: outcomeTopic
    name: sub.name
    properties: subscriptionProperties(sub, functionApp.id, storage.id)
    dependsOn: [
      deadLetterContainer
      outcomeDeadLetterWriter
      outcomeDestinationRoles
    ]
  }
]

// ---------------------------------------------------------------------------------------------
// Alerts (only with alertEmail): failed/retried events, dead-lettered events, one email group
// ---------------------------------------------------------------------------------------------

resource alertActionGroup 'Microsoft.Insights/actionGroups@2022-04-01' = if (!empty(alertEmail)) {
  name: 'ag-${functionAppName}'
  location: 'global'
  tags: tags
  properties: {
    groupShortName: 'amlevents' // at most 12 characters: the sender name of the email
    enabled: true
    emailReceivers: [
      {
        name: 'operator'
        emailAddress: alertEmail
        useCommonAlertSchema: true
      }
    ]
  }
}

// handlers/runtime/telemetry.py counts every delivery in `amlevents.events`, with its outcome in
// the `amlevents.outcome` dimension; the exporter writes it to customMetrics (valueSum per row).
// Metrics count every event (spans are sampled), hence a log alert on the metric's rows.
resource failedEventsAlert 'Microsoft.Insights/scheduledQueryRules@2021-08-01' = if (!empty(alertEmail)) {
  name: 'alert-${functionAppName}-failed-events'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: 'amlevents: events failed or retried'
    description: 'Deliveries recorded failed or retry in the last 15 minutes (amlevents ledger --outcome failed,retry --since 15m).'
    severity: 2
    enabled: true
    scopes: [
      appInsights.id
    ]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT15M'
    criteria: {
      allOf: [
        {
          query: 'customMetrics | where name == "amlevents.events" | extend outcome = tostring(customDimensions["amlevents.outcome"]) | where outcome in ("failed", "retry") | project timestamp, outcome, events = valueSum'
          timeAggregation: 'Total'
          metricMeasureColumn: 'events'
          operator: 'GreaterThan'
          threshold: 0
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: true
    actions: {
      actionGroups: [
        alertActionGroup.id
      ]
    }
  }
}

// Event Grid gave up on an event (amlevents deadletter list / replay): DeadLetteredCount, a metric
// of Microsoft.EventGrid/systemTopics (Total, by subscription and reason).
resource deadLetterAlert 'Microsoft.Insights/metricAlerts@2018-03-01' = if (!empty(alertEmail)) {
  name: 'alert-${functionAppName}-dead-lettered'
  location: 'global'
  tags: tags
  properties: {
    description: 'Event Grid dead-lettered events of the workspace\'s system topic (amlevents deadletter list).'
    severity: 2
    enabled: true
    scopes: [
      systemTopic.id
    ]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT15M'
    criteria: {
      'odata.type': 'Microsoft.Azure.Monitor.SingleResourceMultipleMetricCriteria'
      allOf: [
        {
          criterionType: 'StaticThresholdCriterion'
          name: 'deadLettered'
          metricNamespace: 'Microsoft.EventGrid/systemTopics'
          metricName: 'DeadLetteredCount'
          operator: 'GreaterThan'
          threshold: 0
          timeAggregation: 'Total'
        }
      ]
    }
    autoMitigate: true
    actions: [
      {
        actionGroupId: alertActionGroup.id
      }
    ]
  }
  dependsOn: [
    systemTopicDeployment
  ]
}

// ---------------------------------------------------------------------------------------------
// Outputs
// ---------------------------------------------------------------------------------------------

output functionAppName string = functionApp.name
output functionAppId string = functionApp.id
output functionAppUrl string = 'https://${functionApp.properties.defaultHostName}'
output managedIdentityClientId string = appIdentity.properties.clientId
output managedIdentityPrincipalId string = appIdentity.properties.principalId
output storageAccountName string = storage.name
output systemTopicName string = systemTopic.name
output outcomeTopicName string = createOutcomeTopic ? outcomeTopic.name : ''
output outcomeTopicEndpoint string = createOutcomeTopic ? outcomeTopic.properties.endpoint : ''
// What this deployment created on each topic (deploy_subscriptions.py deletes the rest).
output eventSubscriptionNames array = deployEventSubscriptions ? map(workspaceSubscriptions, s => string(s.name)) : []
output outcomeSubscriptionNames array = deployEventSubscriptions && createOutcomeTopic ? map(outcomeSubscriptions, s => string(s.name)) : []
// Subscriptions of the file not deployed: a `{placeholder}` without a value in subscriptionValues.
output skippedSubscriptionNames array = skippedSubscriptionNames
output deadLetterContainers array = deadLetterContainers
