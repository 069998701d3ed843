# pyinfra inventory for compare.py: the harness's own pyinfra/inventory.py, with every host's
# known_hosts file taken from $BENCH_STATE (the harness's inventory always looks in its own
# .state/ folder, which is not where the state is when BENCH_STATE moves it).
import importlib.util
import os
from pathlib import Path

_spec = importlib.util.spec_from_file_location(
    "harness_inventory", Path(os.environ["BENCH_HARNESS"]) / "pyinfra" / "inventory.py")
_inv = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_inv)
_known_hosts = str(Path(os.environ["BENCH_STATE"]) / "known_hosts")

llm_fleet = [(name, {**data, "ssh_known_hosts_file": _known_hosts}) for name, data in _inv.llm_fleet]
globals().update({g: members for g, members in vars(_inv).items()
                  if not g.startswith("_") and isinstance(members, list) and g != "llm_fleet"})
