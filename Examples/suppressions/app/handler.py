import subprocess


def run(cmd):
    # nosemgrep: python.lang.security.audit.subprocess-shell-true.subprocess-shell-true
    return subprocess.run(cmd, shell=True, check=False)
