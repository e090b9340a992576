"""Validate and upload HR data to a Microsoft Purview HR connector.

The core is free of Azure Functions imports: the command line and the Function app both call
`pipeline.run_upload`.
"""

__version__ = "0.1.0"
