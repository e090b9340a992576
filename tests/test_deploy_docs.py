"""docs/deploy.md, checked offline: every repository path it names exists, every setting, output,
azd environment value and template parameter it names exists in the templates, and the command
blocks, replayed in order in one shell state from the repository root (a `cd` in one block holds
for the next, as in the admin's terminal), use files that exist where they run (`func` publish
beside host.json, `terraform` beside the .tf files, a `.bicepparam` beside main.bicep, azd beside
azure.yaml). Seeded mistakes show the checker sees them."""

from __future__ import annotations

import json
import re
import shlex
from functools import cache
from pathlib import Path
from typing import Any

from hrconnector_core.settings import APP_SETTINGS

from .conftest import REPO
from .test_infra import INFRA, bicep, terraform, unquote

DOC = REPO / "docs" / "deploy.md"
# Values azd itself reads or sets, besides those main.parameters.json reads.
AZD_BUILTINS = {"AZURE_ENV_NAME", "AZURE_LOCATION", "AZURE_SUBSCRIPTION_ID", "AZURE_RESOURCE_GROUP"}
# The Terraform-only empty AzureWebJobsStorage (test_infra.TERRAFORM_ONLY) and the provider's variable.
OTHER_NAMES = {"AzureWebJobsStorage", "ARM_SUBSCRIPTION_ID"}
NAME = re.compile(
    r"(?<![\w-])(?:HR_[A-Z0-9_]+|AZURE_[A-Z0-9_]+|ARM_[A-Z0-9_]+|APPLICATIONINSIGHTS_[A-Z_]+|"
    r"KEY_VAULT_NAME|FEDERATED_CREDENTIAL|AzureWebJobsStorage(?:__\w+)?)(?![\w-])"
)
SHORT_SUFFIX = re.compile(r"`(__\w+)`")
REPO_PATH = re.compile(
    r"^(?:infra|samples|docs|scripts|hrconnector_core|tests|benchmarks)/[\w./-]+$|^[\w-]+\.(?:yaml|json|py)$"
)
# Named in the guide but not part of this repository's templates, each for a reason.
NOT_OURS = {
    "use_azuread_auth",  # a setting of the admin's own remote azurerm backend
    "deadLetterReason",  # fields of a dead-lettered Event Grid event
    "lastHttpStatusCode",
    "__accountName",  # named as the host-storage form the templates avoid (invalid in sovereign clouds)
    "ignore_changes",  # named as what the Terraform template deliberately does not use
}


@cache
def outputs() -> frozenset[str]:
    bicep_outputs = set(bicep(INFRA / "bicep" / "main.bicep")["outputs"])
    tf_outputs = {unquote(next(iter(o))) for o in terraform("outputs.tf")["output"]}
    return frozenset(bicep_outputs & tf_outputs)


@cache
def azd_env_names() -> frozenset[str]:
    text = (INFRA / "bicep" / "main.parameters.json").read_text(encoding="utf-8")
    return frozenset(re.findall(r"\$\{(\w+)", text)) | AZD_BUILTINS


@cache
def template_parameters() -> frozenset[str]:
    bicep_params = set(bicep(INFRA / "bicep" / "main.bicep")["parameters"])
    tf_vars = {unquote(next(iter(v))) for v in terraform("variables.tf")["variable"]}
    return frozenset(bicep_params | tf_vars)


@cache
def hook_settings() -> frozenset[str]:
    """The environment values the azd hooks read besides the outputs (their retry limits)."""
    scripts = "".join(p.read_text(encoding="utf-8") for p in (INFRA / "scripts").iterdir())
    return frozenset(re.findall(r"HR_HOOK_\w+", scripts))


def deployed_settings() -> set[str]:
    return {s.name for s in APP_SETTINGS if s.deployed}


def name_problems(text: str) -> list[str]:
    problems = []
    known = deployed_settings() | outputs() | azd_env_names() | OTHER_NAMES | hook_settings()
    for name in sorted(set(NAME.findall(text))):
        if name.endswith("__") and any(s.startswith(name) for s in known):
            continue  # a connection's prefix, as in HR_STORAGE__*
        if name not in known:
            problems.append(f"{name}: no such setting, output or azd value in the templates")
    for suffix in sorted(set(SHORT_SUFFIX.findall(text))):
        if suffix not in NOT_OURS and not any(s.endswith(suffix) for s in deployed_settings()):
            problems.append(f"{suffix}: no setting ends so")
    infra_text = "\n".join(p.read_text(encoding="utf-8") for p in INFRA.rglob("*") if p.is_file())
    for token in sorted(set(re.findall(r"`([A-Za-z]\w*)(?: = [^`]+)?`", text))):
        camel = re.fullmatch(r"[a-z]+(?:[A-Z][a-z0-9]*)+[A-Z]*", token)
        snake = re.fullmatch(r"[a-z0-9]+(?:_[a-z0-9]+)+", token)
        if token in NOT_OURS or not (camel or snake):
            continue
        if camel and token not in template_parameters():
            problems.append(f"{token}: no such Bicep parameter")
        if snake and token not in template_parameters() and token not in infra_text:
            problems.append(f"{token}: no such Terraform variable or name in infra/")
    return problems


def path_problems(text: str, created: set[Any]) -> list[str]:
    problems = []
    for token in sorted(set(re.findall(r"`([^`\s]+)`", text))):
        if REPO_PATH.match(token) and not (REPO / token).exists() and REPO / token not in created:
            problems.append(f"{token}: no such file in the repository")
    for link in sorted(set(re.findall(r"\]\(([\w./-]+\.md)\)", text))):
        if not (DOC.parent / link).exists():
            problems.append(f"{link}: broken link")
    return problems


def _commands(block: str) -> list[str]:
    """The block's commands: continuation lines joined, and lines joined while a quote is open."""
    commands: list[str] = []
    pending = ""
    for line in re.sub(r"\\\n\s*", " ", block).splitlines():
        if not pending and (not line.strip() or line.strip().startswith("#")):
            continue
        pending = f"{pending}\n{line}" if pending else line.strip()
        try:
            shlex.split(pending, comments=True)
        except ValueError:
            continue
        commands.append(pending)
        pending = ""
    assert not pending, f"unclosed quote: {pending}"
    return commands


def _option(words: list[str], *names: str) -> str | None:
    for i, word in enumerate(words):
        if word in names and i + 1 < len(words):
            return words[i + 1]
        for name in names:
            if word.startswith(name + "="):
                return word.split("=", 1)[1]
    return None


def command_problems(command: str, cwd: Path, created: set[Any]) -> tuple[list[str], Path]:
    """Problems of one command run in `cwd`, and the directory the next command runs in. `created`
    holds what earlier commands made: files (paths) and resource groups (("group", name))."""
    problems = []
    for inner in re.findall(r"\$\(([^()]*)\)", command):
        problems += command_problems(inner, cwd, created)[0]
    words = shlex.split(re.sub(r"\$\([^()]*\)", "SUBST", command), comments=True)
    if "=" in words[0] and not words[0].startswith("-"):  # name="$(...)"
        return problems, cwd
    program, args = words[0], words[1:]

    def exists(path: str) -> bool:
        return (cwd / path).exists() or (cwd / path).resolve() in created

    if program == "cd":
        target = (cwd / args[0]).resolve()
        if not target.is_dir():
            problems.append(f"cd {args[0]}: no such directory (from {cwd.relative_to(REPO)})")
        return problems, target
    if program == "cp":
        source, dest = args[0], args[1]
        if not exists(source):
            problems.append(f"cp {source}: no such file in {cwd.relative_to(REPO)}")
        created.add((cwd / dest).resolve())
        if dest.endswith(".bicepparam") and not ((cwd / dest).resolve().parent / "main.bicep").exists():
            problems.append(f"{dest}: not beside main.bicep, so `using 'main.bicep'` breaks")
    elif program == "terraform":
        chdir = _option(args, "-chdir")
        where = (cwd / chdir).resolve() if chdir else cwd
        if not list(where.glob("*.tf")):
            problems.append(f"terraform {' '.join(args)}: no .tf files in {where.relative_to(REPO)}")
        if "output" in args:
            name = next(a for a in reversed(args) if not a.startswith("-"))
            if name not in outputs():
                problems.append(f"terraform output {name}: no such output")
        if "apply" in args and not ((where / "terraform.tfvars").exists() or where / "terraform.tfvars" in created):
            problems.append(f"terraform apply in {where.relative_to(REPO)}: no terraform.tfvars there")
        if "apply" in args and any(a == "-var" or a.startswith("-var=") for a in args):
            problems.append("terraform apply -var: the next plain apply undoes it; set it in terraform.tfvars")
    elif program == "func" and args[:3] == ["azure", "functionapp", "publish"]:
        if not ((cwd / "host.json").exists() and (cwd / "function_app.py").exists()):
            problems.append(f"func azure functionapp publish in {cwd.relative_to(REPO)}: no host.json there")
    elif program == "azd" and args[0] not in ("auth", "config", "version"):
        if not (cwd / "azure.yaml").exists():
            problems.append(f"azd {args[0]} in {cwd.relative_to(REPO)}: no azure.yaml there")
        if args[:2] == ["env", "set"] and args[2] not in azd_env_names():
            problems.append(f"azd env set {args[2]}: the templates read no such value")
        if args[:3] == ["env", "set", "AZURE_RESOURCE_GROUP"] and ("group", args[3]) not in created:
            problems.append(f"azd env set AZURE_RESOURCE_GROUP {args[3]}: no `az group create` of it before")
        if args[:2] == ["env", "get-value"] and args[2] not in outputs():
            problems.append(f"azd env get-value {args[2]}: no such output")
        if args[:2] == ["env", "new"]:
            if ("azd env", args[2]) in created:
                problems.append(f"azd env new {args[2]}: it exists already (from an earlier step); azd env select it")
            created.add(("azd env", args[2]))
        if args[:2] == ["env", "select"] and ("azd env", args[2]) not in created:
            problems.append(f"azd env select {args[2]}: no `azd env new` of it before")
    elif program == "az" and args[:3] == ["deployment", "group", "create"]:
        template, parameters = _option(args, "-f", "--template-file"), _option(args, "-p", "--parameters")
        if template is None or not exists(template):
            problems.append(f"az deployment group create -f {template}: no such file in {cwd.relative_to(REPO)}")
        if parameters is None or not exists(parameters):
            problems.append(f"az deployment group create -p {parameters}: no such file")
        elif template and Path(parameters).parent != Path(template).parent:
            problems.append(f"{parameters}: not beside {template}, so `using 'main.bicep'` breaks")
    elif program == "az" and args[:2] == ["group", "create"]:
        created.add(("group", _option(args, "--name", "-n") or ""))
    elif program == "az" and args[:2] == ["storage", "blob"] and "upload" in args:
        file = _option(args, "-f", "--file")
        if file is None or not exists(file):
            problems.append(f"az storage blob upload --file {file}: no such file in {cwd.relative_to(REPO)}")
    elif program == "az" and args[:1] == ["rest"]:
        url = _option(args, "--url", "--uri", "-u") or ""
        if re.search(r"graph\.microsoft\.(?:com|us)", url):
            problems.append(f"az rest --url {url}: a Graph host written out; use $graph, which follows the cloud")
        if url.startswith("$graph") and _option(args, "--resource") != "$graph":
            problems.append(f"az rest --url {url}: no --resource $graph (az rest derives no token audience for DoD)")
    query = _option(args, "--query") or ""
    for name in re.findall(r"properties\.outputs\.(\w+)", query):
        if name not in outputs():
            problems.append(f"{name}: no such output")
    return problems, cwd


def doc_problems(text: str) -> list[str]:
    problems: list[str] = []
    created: set[Any] = set()
    cwd = REPO  # one shell for the whole guide: a block starts where the previous one ended
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for command in _commands(block):
            found, cwd = command_problems(command, cwd, created)
            problems += found
    return problems + name_problems(text) + path_problems(text, created)


def test_the_deploy_guide_names_only_what_exists_and_runs_each_command_where_its_files_are() -> None:
    assert doc_problems(DOC.read_text(encoding="utf-8")) == []


def test_the_guide_covers_what_a_first_time_admin_needs() -> None:
    text = " ".join(DOC.read_text(encoding="utf-8").split())
    for needed in (
        "az login",
        "azd auth login",
        "Role Based Access Control Administrator",
        "Data Connector Admin",
        "job ID",
        "Key Vault Secrets Officer",
        "Key Vault Certificates Officer",
        "azd env get-value FEDERATED_CREDENTIAL",
        "output -json FEDERATED_CREDENTIAL",
        "samples/resignation.csv",
        "blobs_extension",
        "az keyvault recover",
        "Troubleshooting",
        "Storage Queue Data Contributor",
    ):
        assert needed in text, needed
    assert "state holds no secret" not in text


def test_seeded_renamed_setting_and_output_are_caught() -> None:
    text = DOC.read_text(encoding="utf-8")
    bad = text.replace("`HR_SECRET_NAME`", "`HR_SECRET`").replace("get-value KEY_VAULT_NAME", "get-value VAULT_NAME")
    bad = bad.replace("`subscribeEvents = true`", "`subscribeEvent = true`")
    problems = doc_problems(bad)
    assert "HR_SECRET: no such setting, output or azd value in the templates" in problems
    assert "azd env get-value VAULT_NAME: no such output" in problems
    assert "subscribeEvent: no such Bicep parameter" in problems


def test_seeded_commands_in_the_wrong_directory_are_caught() -> None:
    created: set[Path] = set()
    assert command_problems("cp infra/bicep/main.bicepparam my.bicepparam", REPO, created)[0] == [
        "my.bicepparam: not beside main.bicep, so `using 'main.bicep'` breaks"
    ]
    cwd = REPO / "infra" / "terraform"
    assert command_problems("func azure functionapp publish app", cwd, created)[0] == [
        "func azure functionapp publish in infra/terraform: no host.json there"
    ]
    assert command_problems("terraform apply", REPO, created)[0] == [
        "terraform apply: no .tf files in .",
        "terraform apply in .: no terraform.tfvars there",
    ]
    assert command_problems("az storage blob upload --file resignation.csv", REPO, created)[0] == [
        "az storage blob upload --file resignation.csv: no such file in ."
    ]
    assert path_problems("see `infra/bicep/modules/nothing.bicep`", set()) == [
        "infra/bicep/modules/nothing.bicep: no such file in the repository"
    ]


def test_names_the_tests_rely_on_are_real() -> None:
    assert {"KEY_VAULT_NAME", "HR_STORAGE_ACCOUNT", "AZURE_FUNCTION_NAME", "FEDERATED_CREDENTIAL"} <= outputs()
    assert {"HR_APP_ID", "HR_JOB_ID", "HR_KEY_VAULT_NAME"} <= azd_env_names()
    assert json.loads((INFRA / "bicep" / "main.parameters.json").read_text())["parameters"]


def test_the_old_guides_mistakes_are_caught() -> None:
    old = """```bash
azd env set AZURE_RESOURCE_GROUP rg-hr-connector
cp infra/bicep/main.bicepparam my.bicepparam   # fill in appId and the connectors' job ids
az deployment group create -g rg -f infra/bicep/main.bicep -p my.bicepparam
```

```bash
cd infra/terraform
cp terraform.tfvars.example terraform.tfvars   # fill in
terraform init && terraform apply
func azure functionapp publish "$(terraform output -raw AZURE_FUNCTION_NAME)"
terraform apply -var subscribe_events=true
```
"""
    assert doc_problems(old) == [
        "azd env set AZURE_RESOURCE_GROUP rg-hr-connector: no `az group create` of it before",
        "my.bicepparam: not beside main.bicep, so `using 'main.bicep'` breaks",
        "my.bicepparam: not beside infra/bicep/main.bicep, so `using 'main.bicep'` breaks",
        "func azure functionapp publish in infra/terraform: no host.json there",
        "terraform apply -var: the next plain apply undoes it; set it in terraform.tfvars",
    ]


def test_a_cd_holds_for_the_next_block_as_in_one_terminal() -> None:
    guide = """```bash
cp infra/terraform/terraform.tfvars.example infra/terraform/terraform.tfvars
cd infra/terraform
```

Fill it in, then:

```bash
cd infra/terraform
terraform apply
```
"""
    assert doc_problems(guide) == [
        "cd infra/terraform: no such directory (from infra/terraform)",
        "terraform apply: no .tf files in infra/terraform/infra/terraform",
        "terraform apply in infra/terraform/infra/terraform: no terraform.tfvars there",
    ]


def test_a_redeploy_does_not_create_the_azd_environment_again() -> None:
    guide = """```bash
azd env new hrprod
azd up
```

After a teardown, deploy as before:

```bash
azd env new hrprod
azd up
```
"""
    assert doc_problems(guide) == ["azd env new hrprod: it exists already (from an earlier step); azd env select it"]
    text = " ".join(DOC.read_text(encoding="utf-8").split())
    # The vault is recovered into its old group, so the group comes back first.
    recover = text.index("az keyvault recover --name")
    assert text.rindex("az group create", 0, recover) > text.index("## 8. Tear down")


def test_the_sovereign_section_lists_every_api_version_the_bicep_files_use() -> None:
    text = DOC.read_text(encoding="utf-8")
    section = text[text.index("**API versions in Azure Government: not verified.**") :]
    used = set()
    for path in (INFRA / "bicep").rglob("*.bicep"):
        used |= set(re.findall(r"'([\w.]+)/([\w/]+)@([\d-]+(?:-preview)?)'", path.read_text(encoding="utf-8")))
    rows = re.findall(r"^\| (Microsoft\.[^|]+) \| ([\d-]+) \|$", section, re.M)
    assert rows
    for namespace, type_, version in sorted(used):
        last = type_.split("/")[-1]
        assert any(namespace in types and last in types and version == row_version for types, row_version in rows), (
            f"{namespace}/{type_}@{version} not listed in the Azure Government caveat"
        )


def graph_section(text: str) -> str:
    start = text.index("## SharePoint or OneDrive source (Microsoft Graph)")
    return text[start : text.index("\n## ", start + 1)]


def test_the_graph_grant_is_least_privilege_and_follows_the_cloud() -> None:
    section = graph_section(DOC.read_text(encoding="utf-8"))
    flat = " ".join(section.split())
    for needed in (
        "Sites.Selected",
        "Privileged Role Administrator",  # consent to a Microsoft Graph application permission
        "SharePoint Administrator",
        "Sites.FullControl.All",
        "/v1.0/servicePrincipals/$principal/appRoleAssignments",
        "/permissions",
        "roles = @('write')",
        "`read` when `source_move` is false",
        "Files.ReadWrite.All",
        "contoso-my.sharepoint.com",  # OneDrive for Business is a site
        "Grant-PnPEntraIDAppSitePermission",
        "AZURE_FUNCTION_IDENTITY_PRINCIPAL_ID",
        "AZURE_FUNCTION_IDENTITY_CLIENT_ID",
        "HR_SOURCE_SCHEDULE",
        "hr_graph_source",
    ):
        assert needed in flat, needed
    for host, environment in (
        ("https://graph.microsoft.com", "Global"),
        ("https://graph.microsoft.us", "USGov"),
        ("https://dod-graph.microsoft.us", "USGovDoD"),
    ):
        assert host in flat, host
        assert f"-Environment {environment}" in flat or f"`{environment}`" in flat, environment
    # Graph's own application id is the one GUID written out: the role's id is looked up by its value.
    guids = set(re.findall(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", section))
    assert guids == {"00000003-0000-0000-c000-000000000000"}
    assert "appRoles[?value=='Sites.Selected'].id" in section
    commands = [c for block in re.findall(r"```bash\n(.*?)```", section, re.S) for c in _commands(block)]
    assert sum(c.startswith("az rest") for c in commands) == 2


def test_seeded_graph_calls_that_ignore_the_cloud_are_caught() -> None:
    created: set[Any] = set()
    fixed = "az rest --method get --url https://graph.microsoft.com/v1.0/sites/x"
    assert command_problems(fixed, REPO, created)[0] == [
        "az rest --url https://graph.microsoft.com/v1.0/sites/x: a Graph host written out; use $graph, which follows "
        "the cloud"
    ]
    assert command_problems('az rest --method get --url "$graph/v1.0/sites/x"', REPO, created)[0] == [
        "az rest --url $graph/v1.0/sites/x: no --resource $graph (az rest derives no token audience for DoD)"
    ]
    assert command_problems('az rest --method get --resource "$graph" --url "$graph/v1.0/x"', REPO, created)[0] == []
