//! (template, variables) -> rendered text, with Ansible's template dialect.
