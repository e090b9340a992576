// Deploys nothing: ARM checks this parameter's length for each connector before anything else is
// deployed, so an unset HR_JOB_ID (azd) or an empty job_id stops the deployment with a message naming
// jobId, as Terraform's validation of `connectors` does. (Bicep's fail() or a typed parameter would
// say it more directly, but the parser checkov pins reads neither.)

@description('The connector\'s folder in hr-incoming (for the message).')
param folder string

@description('Job ID of the HR connector (a GUID, from the connector\'s page in the Purview portal).')
@minLength(36)
@maxLength(36)
param jobId string

@description('The folder whose job id was accepted.')
output folder string = folder
