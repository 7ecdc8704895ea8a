# stream-wav2lip installer for Windows (PowerShell). Kept in step with install.sh by hand.
#
#   powershell -ExecutionPolicy Bypass -File install.ps1           runtime
#   powershell -ExecutionPolicy Bypass -File install.ps1 -Test     also the test dependencies
#
# Environment knobs (same as install.sh):
#   $env:PYTHON           interpreter for the venv (default: py -3.11; OBS on Windows must use the same 3.11)
#   $env:TORCH_SPEC       torch requirement (default: torch==2.13.0)
#   $env:TORCH_INDEX_URL  extra index for torch wheels (set it to PyTorch's CUDA wheel index to get a CUDA build)
param([switch]$Test)
$ErrorActionPreference = "Stop"
Set-Location $PSScriptRoot
$Root = (Get-Location).Path
function Say($m) { Write-Host "[install] $m" -ForegroundColor Cyan }

# ------------------------------------------------------------------ system tools
if (-not (Get-Command ffmpeg -ErrorAction SilentlyContinue)) {
  if (Get-Command winget -ErrorAction SilentlyContinue) {
    Say "ffmpeg: installing with winget"
    winget install --silent --accept-package-agreements --accept-source-agreements -e --id Gyan.FFmpeg | Out-Null
  } else { Say "ffmpeg: not found; install it and put it on PATH (needed for some audio formats)" }
}
if (-not (Get-Command espeak-ng -ErrorAction SilentlyContinue)) {
  Say "espeak-ng: not found; 'stream-wav2lip demo' needs it for offline speech (winget install espeak-ng)"
}

# ------------------------------------------------------------------ python + venv
if ($env:PYTHON) { $Py = @($env:PYTHON) } else { $Py = @("py", "-3.11") }
if (-not (Test-Path ".venv\Scripts\python.exe")) {
  Say "venv: creating .venv with $($Py -join ' ')"
  & $Py[0] $Py[1..($Py.Length)] -m venv .venv
} else { Say "venv: .venv exists" }
$VPy = Join-Path $Root ".venv\Scripts\python.exe"
& $VPy -m pip install -q --upgrade pip setuptools wheel

# ------------------------------------------------------------------ torch (CUDA when an NVIDIA GPU is present)
& $VPy -c "import torch" 2>$null
if ($LASTEXITCODE -ne 0) {
  $spec = if ($env:TORCH_SPEC) { $env:TORCH_SPEC } else { "torch==2.13.0" }
  $extra = @(); if ($env:TORCH_INDEX_URL) { $extra = @("--extra-index-url", $env:TORCH_INDEX_URL) }
  if ((Get-Command nvidia-smi -ErrorAction SilentlyContinue) -and -not $env:TORCH_INDEX_URL) {
    Say "torch: NVIDIA GPU found; set TORCH_INDEX_URL to PyTorch's CUDA wheel index for a CUDA build"
  }
  Say "torch: installing $spec"
  & $VPy -m pip install -q @extra $spec
}

# ------------------------------------------------------------------ the project
$extras = if ($Test) { "audio,test" } else { "audio" }
Say "project: pip install -e .[$extras]"
& $VPy -m pip install -q -e ".[$extras]"
& $VPy -m stream_wav2lip doctor --brief

$base = & $VPy -c "import sys; print(sys.base_prefix)"
Write-Host ""
Say "done."
Write-Host "  Run the demo:   .venv\Scripts\stream-wav2lip demo"
Write-Host "  Run the tests:  .venv\Scripts\python -m pytest -m `"not soak`""
Write-Host "  OBS Studio:     Tools -> Scripts -> Python Settings -> Python install path: $base"
Write-Host "                  Tools -> Scripts -> + -> $Root\obs_plugin\stream_wav2lip_obs.py"
