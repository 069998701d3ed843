<#
.SYNOPSIS
    Starts, stops, restarts or reports the vLLM container of this Windows GPU host.

.DESCRIPTION
    Reads config.yml, which deploy renders from templates/vllm.config.yml.j2 into the host's
    vllm_dir (hosts/group_vars/vllm.yml: config.yml there, this script in its scripts\
    folder), and runs the vllm/vllm-openai image with docker run, one vLLM flag per config
    key. --served-model-name is passed only when served_model_name is set; without it vLLM
    serves the model under its HuggingFace path and LiteLLM's route to the served name
    404s (seeds 000 and 001).

    The whole config.yml is read and checked before anything is stopped, so a broken file
    leaves the running container alone.

    Exit codes: 0 done (Status: the container is running); 1 failed (config.yml, docker, or
    the container did not stay running); 3 Status: the container is not running.

    Windows PowerShell 5.1 compatible, and ASCII only: 5.1 reads a script without a byte
    order mark in the ANSI code page.

.PARAMETER Action
    Start, Stop, Restart or Status. Start leaves a running container as it is; Restart
    applies a changed config.yml (deploy's `restart vllm` handler runs it).

.PARAMETER ConfigPath
    The config.yml to read; by default config.yml in the folder above this script's folder.

.PARAMETER CacheDir
    Host folder mounted as the container's HuggingFace cache, so that a new container does
    not download the model again; by default %USERPROFILE%\.cache\huggingface.

.PARAMETER StartTimeoutSeconds
    How long Start waits for the container to be running steadily.

.PARAMETER SettleSeconds
    How long the container must stay running, without a restart, to count as started:
    vLLM exits within seconds on a flag it rejects.

.EXAMPLE
    .\Start-VLLM.ps1 -Action Restart
#>
[CmdletBinding()]
param(
    [Parameter(Mandatory = $true)]
    [ValidateSet('Start', 'Stop', 'Restart', 'Status')]
    [string]$Action,

    [string]$ConfigPath = '',

    [string]$CacheDir = '',

    [ValidateRange(10, 1800)]
    [int]$StartTimeoutSeconds = 120,

    [ValidateRange(0, 600)]
    [int]$SettleSeconds = 30
)

$ErrorActionPreference = 'Stop'
Set-StrictMode -Version 2.0

# Every key vllm.config.yml.j2 writes under `vllm:`, in the template's order. Optional keys
# are the ones the template writes only when the host sets them; every other key is required,
# so the template's defaults are the only defaults. Flag is the vLLM argument the key becomes;
# Use says what a key without a flag is for. A key config.yml has and this table lacks fails
# the run: a key nobody read is how served_model_name was lost (seed 000).
$VllmKeys = @(
    @{ Name = 'enabled'; Type = 'bool'; Optional = $false; Flag = ''; Use = 'false: Start does not start the container' }
    @{ Name = 'model'; Type = 'name'; Optional = $false; Flag = '--model'; Use = '' }
    @{ Name = 'served_model_name'; Type = 'name'; Optional = $true; Flag = '--served-model-name'; Use = '' }
    @{ Name = 'port'; Type = 'int'; Optional = $false; Min = 1; Max = 65535; Flag = ''; Use = 'docker --publish port:8000' }
    @{ Name = 'container_name'; Type = 'name'; Optional = $false; Flag = ''; Use = 'docker --name' }
    @{ Name = 'image'; Type = 'name'; Optional = $false; Flag = ''; Use = 'docker run image' }
    @{ Name = 'max_model_len'; Type = 'int'; Optional = $false; Min = 1; Flag = '--max-model-len'; Use = '' }
    @{ Name = 'max_num_seqs'; Type = 'int'; Optional = $true; Min = 1; Flag = '--max-num-seqs'; Use = '' }
    @{ Name = 'gpu_memory_utilization'; Type = 'fraction'; Optional = $false; Flag = '--gpu-memory-utilization'; Use = '' }
    @{ Name = 'quantization'; Type = 'name'; Optional = $true; Flag = '--quantization'; Use = '' }
    @{ Name = 'tensor_parallel_size'; Type = 'int'; Optional = $false; Min = 1; Flag = '--tensor-parallel-size'; Use = '' }
    # Seed 001's switching of the host between vLLM and other GPU use: not this script's
    # job, and no vLLM flag matches them. They are checked here and shown by Status.
    @{ Name = 'auto_switch'; Type = 'bool'; Optional = $false; Flag = ''; Use = 'mode switching' }
    @{ Name = 'check_interval_minutes'; Type = 'int'; Optional = $false; Min = 1; Flag = ''; Use = 'mode switching' }
    @{ Name = 'idle_threshold_minutes'; Type = 'int'; Optional = $false; Min = 1; Flag = ''; Use = 'mode switching' }
)

# vLLM listens on this port inside the container; `port` is the host's side of --publish.
$ContainerPort = 8000

# ---------------------------------------------------------------------------------------
# config.yml
#
# Windows PowerShell 5.1 has no YAML parser (powershell-yaml is a gallery module this
# script does not assume installed), so this reads exactly the YAML the template writes: blank lines, comment
# lines, `key:` opening a mapping on the following, deeper indented lines, and `key: value`
# where the value is a double-quoted string, true, false, an integer or a decimal. Anything
# else (lists, flow collections, single quotes, escapes, anchors, tags, block scalars,
# trailing comments, tabs) fails with its line, rather than being half read.
# ---------------------------------------------------------------------------------------

function ConvertFrom-ConfigScalar {
    param([string]$Text, [string]$Where, [string]$Path)
    if ($Text.StartsWith('"')) {
        # Jinja writes the value between the quotes verbatim: a `"` or `\` inside would be
        # broken YAML or a YAML escape, and neither belongs in a name docker or vLLM takes.
        if ($Text -match '^"([^"\\]*)"$') {
            return [string]$Matches[1]
        }
        throw ('{0}: {1} is {2}, which is not one double-quoted string without \ or " inside' -f $Where, $Path, $Text)
    }
    # Case-sensitive: YAML 1.1 also reads True, yes, on as booleans, which the template's
    # `| lower` never writes.
    if ($Text -ceq 'true') {
        return $true
    }
    if ($Text -ceq 'false') {
        return $false
    }
    $invariant = [Globalization.CultureInfo]::InvariantCulture
    # No leading zeros: YAML 1.1 reads 0755 as octal.
    if ($Text -match '^-?(0|[1-9][0-9]*)$') {
        return [long]::Parse($Text, $invariant)
    }
    # InvariantCulture: a German Windows would otherwise read 0.88 as 88.
    if ($Text -match '^-?(0|[1-9][0-9]*)\.[0-9]+$') {
        return [double]::Parse($Text, $invariant)
    }
    throw ('{0}: {1} is {2}, which is not a double-quoted string, true, false or a number (the template quotes every string)' -f $Where, $Path, $Text)
}

function ConvertFrom-ConfigYaml {
    param(
        [Parameter(Mandatory = $true)] [AllowEmptyString()] [string]$Text,
        [Parameter(Mandatory = $true)] [string]$Source
    )
    $root = [ordered]@{}
    # Where each dotted key was found, for the checks' messages.
    $lineOf = @{}
    # The mappings open at the current line, innermost last: their keys' column, the
    # mapping, and its dotted path.
    $open = New-Object System.Collections.ArrayList
    [void]$open.Add(@{ Indent = 0; Map = $root; Path = '' })
    # A `key:` without a value: the next line must open its mapping, indented deeper.
    $pending = $null
    $lines = $Text.TrimStart([char]0xFEFF) -split "`r?`n"
    for ($i = 0; $i -lt $lines.Length; $i++) {
        $line = $lines[$i]
        $where = '{0} line {1}' -f $Source, ($i + 1)
        if ($line.Contains("`t")) {
            throw ('{0}: a tab; YAML indents with spaces' -f $where)
        }
        if ($line -match '^ *(#.*)?$') {
            continue
        }
        # A positive match (not -notmatch) is what sets $Matches for the lines below.
        if (-not ($line -match '^( *)([A-Za-z_][A-Za-z0-9_]*):( .*)?$')) {
            throw ('{0}: expected "key:" or "key: value", found "{1}" (only the YAML vllm.config.yml.j2 writes is read)' -f $where, $line.Trim())
        }
        $indent = $Matches[1].Length
        $key = $Matches[2]
        $rest = ''
        if ($null -ne $Matches[3]) {
            $rest = $Matches[3].Trim()
        }

        $top = $open[$open.Count - 1]
        if ($null -ne $pending) {
            if ($indent -le $top.Indent) {
                throw ('{0}: {1} has no value' -f $pending.At, $pending.Path)
            }
            $child = [ordered]@{}
            $top.Map[$pending.Key] = $child
            [void]$open.Add(@{ Indent = $indent; Map = $child; Path = $pending.Path })
            $pending = $null
        } else {
            # Close the mappings this line is outdented from; it must then line up with the
            # keys of the one still open.
            while ($indent -lt $top.Indent) {
                $open.RemoveAt($open.Count - 1)
                $top = $open[$open.Count - 1]
            }
            if ($indent -ne $top.Indent) {
                throw ('{0}: the indentation of {1} matches no enclosing mapping' -f $where, $key)
            }
        }
        $top = $open[$open.Count - 1]

        $path = $key
        if ($top.Path -ne '') {
            $path = $top.Path + '.' + $key
        }
        if ($top.Map.Contains($key)) {
            throw ('{0}: {1} appears twice' -f $where, $path)
        }
        $lineOf[$path] = $where
        if ($rest -eq '') {
            $pending = @{ Key = $key; Path = $path; At = $where }
            continue
        }
        $top.Map[$key] = ConvertFrom-ConfigScalar -Text $rest -Where $where -Path $path
    }
    if ($null -ne $pending) {
        throw ('{0}: {1} has no value' -f $pending.At, $pending.Path)
    }
    return @{ Root = $root; LineOf = $lineOf }
}

# One config value checked against its row of $VllmKeys.
function Test-ConfigValue {
    param($Value, $Spec, [string]$Where)
    $name = 'vllm.' + $Spec.Name
    switch ($Spec.Type) {
        'bool' {
            if ($Value -is [bool]) {
                return $Value
            }
            throw ('{0}: {1} must be true or false' -f $Where, $name)
        }
        'int' {
            if (-not ($Value -is [long])) {
                throw ('{0}: {1} must be an integer' -f $Where, $name)
            }
            if ($Spec.ContainsKey('Min') -and $Value -lt $Spec.Min) {
                throw ('{0}: {1} is {2}, below {3}' -f $Where, $name, $Value, $Spec.Min)
            }
            if ($Spec.ContainsKey('Max') -and $Value -gt $Spec.Max) {
                throw ('{0}: {1} is {2}, above {3}' -f $Where, $name, $Value, $Spec.Max)
            }
            return $Value
        }
        'fraction' {
            if (-not ($Value -is [double] -or $Value -is [long]) -or $Value -le 0 -or $Value -gt 1) {
                throw ('{0}: {1} must be a number above 0 and at most 1' -f $Where, $name)
            }
            return [double]$Value
        }
        'name' {
            # Every name travels on docker's command line, which 5.1 builds by joining the
            # arguments: a space or a quote would reach docker split or mangled.
            if (-not ($Value -is [string]) -or $Value -notmatch '^[A-Za-z0-9._:/@+-]+$') {
                throw ('{0}: {1} must be a non-empty name of letters, digits and ._:/@+-' -f $Where, $name)
            }
            return $Value
        }
    }
    throw ('Start-VLLM.ps1 has no type {0} (for {1})' -f $Spec.Type, $name)
}

# config.yml -> an ordered map from each key of $VllmKeys that is set to its checked value.
function Read-VllmConfig {
    param([string]$Path)
    if (-not (Test-Path -LiteralPath $Path -PathType Leaf)) {
        throw ('config.yml not found at {0} (deploy writes it from vllm.config.yml.j2)' -f $Path)
    }
    # Not Get-Content: 5.1 reads a file without a byte order mark in the ANSI code page.
    $text = [IO.File]::ReadAllText($Path, [Text.Encoding]::UTF8)
    $yaml = ConvertFrom-ConfigYaml -Text $text -Source $Path
    foreach ($topKey in $yaml.Root.Keys) {
        if ($topKey -ne 'vllm') {
            throw ('{0}: {1} is not read by Start-VLLM.ps1 (only vllm is)' -f $yaml.LineOf[$topKey], $topKey)
        }
    }
    if (-not $yaml.Root.Contains('vllm')) {
        throw ('{0}: there is no vllm mapping' -f $Path)
    }
    $vllm = $yaml.Root['vllm']
    if (-not ($vllm -is [System.Collections.IDictionary])) {
        throw ('{0}: vllm is not a mapping' -f $yaml.LineOf['vllm'])
    }
    $known = @{}
    foreach ($spec in $VllmKeys) {
        $known[$spec.Name] = $true
    }
    foreach ($key in $vllm.Keys) {
        if (-not $known.ContainsKey($key)) {
            throw ('{0}: vllm.{1} is not a key Start-VLLM.ps1 knows; the template and this script must change together' -f $yaml.LineOf['vllm.' + $key], $key)
        }
    }
    $config = [ordered]@{}
    foreach ($spec in $VllmKeys) {
        if (-not $vllm.Contains($spec.Name)) {
            if ($spec.Optional) {
                continue
            }
            throw ('{0}: vllm.{1} is missing (the template always writes it)' -f $Path, $spec.Name)
        }
        $at = $yaml.LineOf['vllm.' + $spec.Name]
        $config[$spec.Name] = Test-ConfigValue -Value $vllm[$spec.Name] -Spec $spec -Where $at
    }
    return $config
}

# A value as vLLM and docker read it: invariant culture, lower-case booleans.
function Format-ConfigValue {
    param($Value)
    if ($Value -is [bool]) {
        if ($Value) {
            return 'true'
        }
        return 'false'
    }
    return [string]::Format([Globalization.CultureInfo]::InvariantCulture, '{0}', $Value)
}

# The name vLLM answers to in /v1/models.
function Get-ServedName {
    param($Config)
    if ($Config.Contains('served_model_name')) {
        return $Config['served_model_name']
    }
    return $Config['model']
}

# ---------------------------------------------------------------------------------------
# docker
# ---------------------------------------------------------------------------------------

# Runs docker; its exit code decides. 5.1 wraps each stderr line of a redirected native
# command in an error record, and under 'Stop' the first one (a warning, pull progress)
# would end the script, so docker runs under 'Continue' here and stderr is kept as text.
function Invoke-Docker {
    param([string[]]$Arguments)
    $ErrorActionPreference = 'Continue'
    $out = New-Object System.Collections.Generic.List[string]
    $err = New-Object System.Collections.Generic.List[string]
    & docker @Arguments 2>&1 | ForEach-Object {
        if ($_ -is [System.Management.Automation.ErrorRecord]) {
            $err.Add($_.ToString())
        } else {
            $out.Add([string]$_)
        }
    }
    return [pscustomobject]@{ Code = $LASTEXITCODE; Out = $out.ToArray(); Err = $err.ToArray() }
}

function Invoke-DockerChecked {
    param([string[]]$Arguments)
    $result = Invoke-Docker -Arguments $Arguments
    if ($result.Code -ne 0) {
        throw ('docker {0} failed (exit {1}): {2}' -f $Arguments[0], $result.Code, (($result.Err + $result.Out) -join ' '))
    }
    return $result
}

function Assert-DockerReady {
    if ($null -eq (Get-Command -Name docker -CommandType Application -ErrorAction SilentlyContinue)) {
        throw 'docker is not on PATH (Docker Desktop installs it)'
    }
    $result = Invoke-Docker -Arguments @('version', '--format', '{{.Server.Version}}')
    if ($result.Code -ne 0) {
        throw ('docker cannot reach its engine; is Docker Desktop running? {0}' -f ($result.Err -join ' '))
    }
}

# The container's state: Status is docker's (running, exited, restarting, ...) or missing.
function Get-ContainerState {
    param([Parameter(Mandatory = $true)] [string]$Name)
    $result = Invoke-Docker -Arguments @('container', 'inspect', '--format', '{{.State.Status}} {{.RestartCount}} {{.State.ExitCode}}', $Name)
    if ($result.Code -ne 0) {
        if (($result.Err -join ' ') -match 'No such') {
            return [pscustomobject]@{ Status = 'missing'; Restarts = 0; ExitCode = 0 }
        }
        throw ('docker container inspect {0} failed: {1}' -f $Name, ($result.Err -join ' '))
    }
    $answer = @($result.Out | Where-Object { $_.Trim() -ne '' })
    if ($answer.Count -eq 0 -or -not ($answer[-1].Trim() -match '^([a-z]+) ([0-9]+) (-?[0-9]+)$')) {
        throw ('docker container inspect {0} answered "{1}"' -f $Name, ($result.Out -join ' '))
    }
    return [pscustomobject]@{ Status = $Matches[1]; Restarts = [int]$Matches[2]; ExitCode = [int]$Matches[3] }
}

function Get-DockerRunArguments {
    param($Config, [string]$Cache)
    $arguments = New-Object System.Collections.Generic.List[string]
    $arguments.AddRange([string[]]@(
            'run', '--detach',
            '--name', $Config['container_name'],
            '--gpus', 'all',
            # vLLM's workers share tensors through shared memory (vLLM's Docker guide).
            '--ipc=host',
            # Back after a reboot once Docker Desktop is up; Stop removes the container.
            '--restart', 'unless-stopped',
            '--publish', ('{0}:{1}' -f $Config['port'], $ContainerPort),
            '--volume', ('{0}:/root/.cache/huggingface' -f $Cache),
            $Config['image']
        ))
    foreach ($spec in $VllmKeys) {
        if ($spec.Flag -ne '' -and $Config.Contains($spec.Name)) {
            $arguments.Add($spec.Flag)
            $arguments.Add((Format-ConfigValue $Config[$spec.Name]))
        }
    }
    $arguments.AddRange([string[]]@('--host', '0.0.0.0', '--port', [string]$ContainerPort))
    return $arguments.ToArray()
}

# Polls until the container has run for $Settle seconds without a restart, or has failed.
# Bounded twice: by the number of checks and by the clock, so a slow docker cannot stretch
# it. Returns the last state and whether it settled.
function Wait-ContainerSteady {
    param([string]$Name, [int]$Timeout, [int]$Settle)
    $poll = 3
    $maxChecks = [int][Math]::Ceiling($Timeout / $poll) + 1
    $clock = [Diagnostics.Stopwatch]::StartNew()
    $upSince = -1.0
    $state = $null
    for ($check = 0; $check -lt $maxChecks; $check++) {
        $state = Get-ContainerState -Name $Name
        # With --restart a crash shows as a restart count, not only as `exited`.
        if ($state.Restarts -gt 0 -or $state.Status -eq 'exited' -or $state.Status -eq 'dead' -or $state.Status -eq 'missing') {
            break
        }
        $now = $clock.Elapsed.TotalSeconds
        if ($state.Status -eq 'running') {
            if ($upSince -lt 0) {
                $upSince = $now
            }
            if ($now - $upSince -ge $Settle) {
                return [pscustomobject]@{ State = $state; Steady = $true }
            }
        } else {
            $upSince = -1.0
        }
        if ($now -ge $Timeout) {
            break
        }
        Start-Sleep -Seconds $poll
    }
    return [pscustomobject]@{ State = $state; Steady = $false }
}

# ---------------------------------------------------------------------------------------
# Actions
# ---------------------------------------------------------------------------------------

# Stops and removes the container: the next Start creates it with config.yml's flags, which
# a stopped container would not pick up.
function Stop-VllmContainer {
    param($Config)
    $name = $Config['container_name']
    $state = Get-ContainerState -Name $name
    if ($state.Status -eq 'missing') {
        Write-Host ('vLLM container {0} does not exist; nothing to stop' -f $name)
        return
    }
    if ($state.Status -ne 'exited' -and $state.Status -ne 'created' -and $state.Status -ne 'dead') {
        # Bounded by docker: SIGTERM, then SIGKILL after --time seconds.
        [void](Invoke-DockerChecked -Arguments @('stop', '--time', '30', $name))
    }
    [void](Invoke-DockerChecked -Arguments @('rm', '--force', $name))
    $after = Get-ContainerState -Name $name
    if ($after.Status -ne 'missing') {
        throw ('vLLM container {0} is still there ({1}) after docker rm' -f $name, $after.Status)
    }
    Write-Host ('Stopped and removed vLLM container {0}' -f $name)
}

function Start-VllmContainer {
    param($Config, [string]$Cache)
    $name = $Config['container_name']
    if (-not $Config['enabled']) {
        Write-Host ('vllm.enabled is false in config.yml: not starting {0}' -f $name)
        return
    }
    $state = Get-ContainerState -Name $name
    if ($state.Status -eq 'running') {
        Write-Host ('vLLM container {0} is already running; -Action Restart applies a changed config.yml' -f $name)
        return
    }
    if ($state.Status -ne 'missing') {
        # A stopped container keeps the flags it was created with.
        [void](Invoke-DockerChecked -Arguments @('rm', '--force', $name))
    }
    if (-not (Test-Path -LiteralPath $Cache -PathType Container)) {
        [void](New-Item -ItemType Directory -Path $Cache -Force)
    }
    $arguments = Get-DockerRunArguments -Config $Config -Cache $Cache
    Write-Host ('docker {0}' -f ($arguments -join ' '))
    [void](Invoke-DockerChecked -Arguments $arguments)

    $waited = Wait-ContainerSteady -Name $name -Timeout $StartTimeoutSeconds -Settle $SettleSeconds
    if (-not $waited.Steady) {
        $logs = Invoke-Docker -Arguments @('logs', '--tail', '40', $name)
        foreach ($line in ($logs.Out + $logs.Err)) {
            [Console]::Error.WriteLine($line)
        }
        # Stopped, not removed: it would restart in a loop, and `docker logs` still has its output.
        [void](Invoke-Docker -Arguments @('stop', '--time', '10', $name))
        throw ('vLLM container {0} did not stay running (status {1}, exit code {2}, restarts {3}); its last log lines are above' -f $name, $waited.State.Status, $waited.State.ExitCode, $waited.State.Restarts)
    }
    Write-Host ('vLLM container {0} is running: {1} served as {2} on port {3}' -f $name, $Config['model'], (Get-ServedName $Config), $Config['port'])
}

# Prints the config and the container's state; true when it is running.
function Show-VllmStatus {
    param($Config, [string]$Path)
    Write-Host ('config: {0}' -f $Path)
    foreach ($key in $Config.Keys) {
        Write-Host ('  {0}: {1}' -f $key, (Format-ConfigValue $Config[$key]))
    }
    Write-Host ('  (served as {0})' -f (Get-ServedName $Config))
    $state = Get-ContainerState -Name $Config['container_name']
    Write-Host ('container {0}: {1} (restarts {2})' -f $Config['container_name'], $state.Status, $state.Restarts)
    return ($state.Status -eq 'running')
}

# ---------------------------------------------------------------------------------------
# Main: every failure ends here, on stderr, with exit code 1.
# ---------------------------------------------------------------------------------------

$exitCode = 0
try {
    if ($ConfigPath -eq '') {
        $ConfigPath = Join-Path (Split-Path -Parent $PSScriptRoot) 'config.yml'
    }
    if ($CacheDir -eq '') {
        if (-not $env:USERPROFILE) {
            throw 'USERPROFILE is not set; pass -CacheDir'
        }
        $CacheDir = Join-Path $env:USERPROFILE '.cache\huggingface'
    }
    if ($SettleSeconds -ge $StartTimeoutSeconds) {
        throw ('-SettleSeconds {0} must be below -StartTimeoutSeconds {1}' -f $SettleSeconds, $StartTimeoutSeconds)
    }
    $config = Read-VllmConfig -Path $ConfigPath
    Assert-DockerReady
    switch ($Action) {
        'Start' {
            Start-VllmContainer -Config $config -Cache $CacheDir
        }
        'Stop' {
            Stop-VllmContainer -Config $config
        }
        'Restart' {
            Stop-VllmContainer -Config $config
            Start-VllmContainer -Config $config -Cache $CacheDir
        }
        'Status' {
            if (-not (Show-VllmStatus -Config $config -Path $ConfigPath)) {
                $exitCode = 3
            }
        }
    }
} catch {
    [Console]::Error.WriteLine(('Start-VLLM.ps1 -Action {0}: {1}' -f $Action, $_.Exception.Message))
    $exitCode = 1
}
exit $exitCode
