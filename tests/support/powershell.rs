//! A PowerShell syntax check for the tests. In: a script's name and text. Out: nothing, or a
//! panic naming the script and the line and column of every `ERROR` or `MISSING` node that
//! tree-sitter-powershell's grammar leaves in its parse. No PowerShell interpreter can be
//! installed here, so this is what checks deploy's scripts: parsed by a real grammar, not
//! run.

use tree_sitter::{Node, Parser};

/// Every `ERROR` and `MISSING` node of `text`'s parse, in document order, each as
/// `line L, column C: ...` (1-based; columns count characters).
pub fn syntax_errors(text: &str) -> Vec<String> {
    let mut parser = Parser::new();
    parser
        .set_language(&tree_sitter_powershell::LANGUAGE.into())
        .expect("tree-sitter-powershell's ABI matches tree-sitter's");
    let tree = parser
        .parse(text, None)
        .expect("a parse (no timeout is set)");
    let mut found = Vec::new();
    // Every node, not only those under `has_error()`: the check must not depend on how the
    // library propagates that flag.
    let mut cursor = tree.walk();
    loop {
        let node = cursor.node();
        if node.is_error() || node.is_missing() {
            found.push(describe(text, node));
        }
        if cursor.goto_first_child() || cursor.goto_next_sibling() {
            continue;
        }
        loop {
            if !cursor.goto_parent() {
                return found;
            }
            if cursor.goto_next_sibling() {
                break;
            }
        }
    }
}

fn describe(text: &str, node: Node<'_>) -> String {
    let start = node.start_position();
    let line_start = node.start_byte() - start.column;
    let column = text[line_start..node.start_byte()].chars().count() + 1;
    let at = format!("line {}, column {column}", start.row + 1);
    if node.is_missing() {
        return format!("{at}: MISSING `{}`", node.kind());
    }
    let excerpt: String = text[node.start_byte()..node.end_byte()]
        .lines()
        .next()
        .unwrap_or("")
        .chars()
        .take(60)
        .collect();
    format!("{at}: ERROR at `{excerpt}`")
}

/// Panics unless `text` parses without an `ERROR` or `MISSING` node; the message names
/// `name` and every such node's line and column.
pub fn assert_parses(name: &str, text: &str) {
    let errors = syntax_errors(text);
    assert!(
        errors.is_empty(),
        "{name} does not parse as PowerShell ({} problems):\n  {}",
        errors.len(),
        errors.join("\n  ")
    );
}
