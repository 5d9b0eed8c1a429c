//! Output formats shared by every subcommand: a table for people, JSON/YAML for scripts.

use serde::Serialize;

/// How to print results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Human-readable table.
    Table,
    /// JSON (one document).
    Json,
    /// YAML.
    Yaml,
}

/// Prints rows as a table (headers + string cells) or the serializable value as JSON/YAML.
pub fn print<T: Serialize>(
    format: Format,
    value: &T,
    headers: &[&str],
    rows: Vec<Vec<String>>,
) -> anyhow::Result<()> {
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(value)?),
        Format::Yaml => print!("{}", yaml_serde::to_string(value)?),
        Format::Table => {
            let mut t = comfy_table::Table::new();
            t.load_preset(comfy_table::presets::UTF8_BORDERS_ONLY);
            t.set_header(headers.to_vec());
            for r in rows {
                t.add_row(r);
            }
            println!("{t}");
        }
    }
    Ok(())
}
