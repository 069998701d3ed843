"""The hosts `ansible -i INVENTORY all --list-hosts -l LIMIT` selects, for many cases in one
process: ansible-core's own InventoryManager and the CLI's get_host_list, which is what that
command runs (a fresh InventoryManager per case, so no cache is shared between cases).

stdin: JSON lines {"inventory": PATH, "limit": PATTERN}; stdout: one JSON line per case,
{"hosts": [...]} or {"error": MESSAGE}. Run by tests/support/ansible.rs.
"""
import json
import sys

from ansible.plugins.loader import init_plugin_loader

init_plugin_loader()

from ansible.cli import CLI  # noqa: E402
from ansible.inventory.manager import InventoryManager  # noqa: E402
from ansible.parsing.dataloader import DataLoader  # noqa: E402

for line in sys.stdin:
    if not line.strip():
        continue
    case = json.loads(line)
    try:
        inventory = InventoryManager(loader=DataLoader(), sources=[case["inventory"]])
        hosts = CLI.get_host_list(inventory, case["limit"], "all")
        out = {"hosts": [h.name for h in hosts]}
    except Exception as e:  # AnsibleError: out-of-range subscript, no host left
        out = {"error": str(e)}
    print(json.dumps(out), flush=True)
