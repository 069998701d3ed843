//! (template, variables) -> rendered text, with Ansible's template dialect.
//! Placeholder until the full renderer lands: strict undefined, trim_blocks, trailing newline.

use std::path::Path;

use minijinja::{Environment, UndefinedBehavior, Value};

#[derive(Debug, thiserror::Error)]
#[error("{template}:{line}: {message}")]
pub struct RenderError {
    pub template: String,
    pub line: usize,
    pub message: String,
}

pub struct Renderer {
    env: Environment<'static>,
}

impl Renderer {
    pub fn new(templates_dir: &Path) -> Renderer {
        let mut env = Environment::new();
        env.set_loader(minijinja::path_loader(templates_dir));
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
        if let Ok(syntax) = minijinja::syntax::SyntaxConfig::builder()
            .trim_blocks(true)
            .keep_trailing_newline(true)
            .build()
        {
            env.set_syntax(syntax);
        }
        Renderer { env }
    }

    pub fn render_file(&self, name: &str, vars: &Value) -> Result<String, RenderError> {
        let t = self.env.get_template(name).map_err(|e| err(name, e))?;
        t.render(vars).map_err(|e| err(name, e))
    }

    pub fn render_str(
        &self,
        origin: &str,
        source: &str,
        vars: &Value,
    ) -> Result<String, RenderError> {
        self.env
            .render_str(source, vars)
            .map_err(|e| err(origin, e))
    }
}

fn err(name: &str, e: minijinja::Error) -> RenderError {
    RenderError {
        template: name.to_string(),
        line: e.line().unwrap_or(0),
        message: e.to_string(),
    }
}
