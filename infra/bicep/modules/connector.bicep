// Deploys nothing: ARM checks these parameters for each connector before anything else is
// deployed, so an unset HR_JOB_ID (azd) or an empty job_id stops the deployment with a message naming
// jobId, and a source field of the wrong type (source_move: "yes", an empty source_library) one naming
// that field, as Terraform's validation of `connectors` does. (Bicep's fail() or a typed parameter would
// say it more directly, but the parser checkov pins reads neither.)

@description('The connector\'s folder in hr-incoming (for the message).')
param folder string

@description('Job ID of the HR connector (a GUID, from the connector\'s page in the Purview portal).')
@minLength(36)
@maxLength(36)
param jobId string

@description('SharePoint site (or OneDrive for Business) of the connector\'s source folder, e.g. contoso.sharepoint.com/sites/HR; empty: no SharePoint/OneDrive source.')
param sourceSite string

@description('Document library of the source (OneDrive for Business: Documents).')
@minLength(1)
param sourceLibrary string

@description('Folder in the library that is watched; empty: the library\'s root.')
param sourceFolder string

@description('Move each source file to Processed or Failed beside it, with its report, after its upload.')
param sourceMove bool

@description('Copy the files already in the folder the first time the source runs (false: only new ones).')
param sourceCopyExisting bool

@description('The folder whose job id was accepted.')
output folder string = folder
