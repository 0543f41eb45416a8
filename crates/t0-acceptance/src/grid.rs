//! The calibration grid: `path.to.param=[v1,v2];other=[x,y]` (brackets optional; one
//! assignment per line in a `.txt` file), values numbers, strings, booleans or bracketed
//! lists. The seed kept brackets as part of values and silently ignored unknown paths; here a
//! value never keeps its brackets and [`Grid::check_paths`] names an unknown path.

use std::fmt;

/// One value of a grid parameter.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Int(i64),
    Float(f64),
    Bool(bool),
    Str(String),
    List(Vec<Value>),
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Int(v) => write!(f, "{v}"),
            Value::Float(v) => write!(f, "{v}"),
            Value::Bool(v) => write!(f, "{v}"),
            Value::Str(v) => f.write_str(v),
            Value::List(v) => {
                let parts: Vec<String> = v.iter().map(Value::to_string).collect();
                write!(f, "[{}]", parts.join(","))
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GridError {
    #[error("grid assignment {0:?}: expected path=[v1,v2,...]")]
    NoEquals(String),
    #[error("grid assignment {assignment:?}: {why}")]
    Malformed { assignment: String, why: String },
    #[error("grid parameter {0} is assigned twice")]
    Duplicate(String),
    #[error("grid parameter {path} is not a parameter of the profile (known: {known})")]
    UnknownPath { path: String, known: String },
    #[error("the grid is empty")]
    Empty,
}

/// Parameters and their candidate values, in the order given.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Grid {
    pub params: Vec<(String, Vec<Value>)>,
}

impl Grid {
    /// Parse the inline form (assignments separated by `;` or newlines; `#` starts a comment
    /// line in a file).
    pub fn parse(spec: &str) -> Result<Grid, GridError> {
        let mut grid = Grid::default();
        for a in spec.split([';', '\n']).map(str::trim).filter(|a| !a.is_empty() && !a.starts_with('#')) {
            let (path, values) = a.split_once('=').ok_or_else(|| GridError::NoEquals(a.to_string()))?;
            let path = path.trim();
            let bad = |why: &str| GridError::Malformed { assignment: a.to_string(), why: why.to_string() };
            if path.is_empty() || !path.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.') {
                return Err(bad("the path must be dotted names (letters, digits, _)"));
            }
            let values = values.trim();
            let inner = match (values.strip_prefix('['), values.strip_suffix(']')) {
                (Some(_), Some(_)) if values.len() >= 2 => &values[1..values.len() - 1],
                (None, None) => values,
                _ => return Err(bad("unbalanced brackets")),
            };
            let values = split_top(inner).map_err(|w| bad(&w))?.iter().map(|v| value(v)).collect::<Result<Vec<_>, _>>();
            let values = values.map_err(|w| bad(&w))?;
            if values.is_empty() {
                return Err(bad("no values"));
            }
            if grid.params.iter().any(|(p, _)| p == path) {
                return Err(GridError::Duplicate(path.to_string()));
            }
            grid.params.push((path.to_string(), values));
        }
        if grid.params.is_empty() {
            return Err(GridError::Empty);
        }
        Ok(grid)
    }

    /// Every parameter must be one of `known`.
    pub fn check_paths(&self, known: &[&str]) -> Result<(), GridError> {
        match self.params.iter().find(|(p, _)| !known.contains(&p.as_str())) {
            Some((p, _)) => Err(GridError::UnknownPath { path: p.clone(), known: known.join(", ") }),
            None => Ok(()),
        }
    }

    /// The cartesian product, the last parameter varying fastest.
    pub fn points(&self) -> Vec<Vec<(String, Value)>> {
        let mut out: Vec<Vec<(String, Value)>> = vec![Vec::new()];
        for (path, values) in &self.params {
            out = out
                .into_iter()
                .flat_map(|p| {
                    values.iter().map(move |v| {
                        let mut q = p.clone();
                        q.push((path.clone(), v.clone()));
                        q
                    })
                })
                .collect();
        }
        out
    }
}

/// Split on commas outside brackets.
fn split_top(s: &str) -> Result<Vec<String>, String> {
    let (mut out, mut cur, mut depth) = (Vec::new(), String::new(), 0i32);
    for c in s.chars() {
        match c {
            '[' => depth += 1,
            ']' => depth -= 1,
            ',' if depth == 0 => {
                out.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        if depth < 0 {
            return Err("unbalanced brackets".into());
        }
        cur.push(c);
    }
    if depth != 0 {
        return Err("unbalanced brackets".into());
    }
    if !cur.trim().is_empty() || !out.is_empty() {
        out.push(cur);
    }
    Ok(out)
}

fn value(s: &str) -> Result<Value, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("an empty value".into());
    }
    if let Some(inner) = s.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
        return split_top(inner)?.iter().map(|v| value(v)).collect::<Result<Vec<_>, _>>().map(Value::List);
    }
    if s.contains(['[', ']', ' ', '=']) {
        return Err(format!("value {s:?}: brackets, spaces and '=' are not part of a value"));
    }
    Ok(match s {
        "true" => Value::Bool(true),
        "false" => Value::Bool(false),
        _ => match (s.parse::<i64>(), s.parse::<f64>()) {
            (Ok(i), _) => Value::Int(i),
            (_, Ok(f)) if f.is_finite() => Value::Float(f),
            _ => Value::Str(s.to_string()),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_forms_parse_with_or_without_brackets() {
        let g = Grid::parse("a.b=[5,10]; c=0.72,0.75 ;d=[true,x_y]").unwrap();
        assert_eq!(
            g.params,
            vec![
                ("a.b".into(), vec![Value::Int(5), Value::Int(10)]),
                ("c".into(), vec![Value::Float(0.72), Value::Float(0.75)]),
                ("d".into(), vec![Value::Bool(true), Value::Str("x_y".into())]),
            ]
        );
        assert_eq!(g.points().len(), 8);
        assert_eq!(
            g.points()[1],
            vec![
                ("a.b".into(), Value::Int(5)),
                ("c".into(), Value::Float(0.72)),
                ("d".into(), Value::Str("x_y".into()))
            ]
        );
    }

    #[test]
    fn brackets_are_never_part_of_a_value_and_nested_lists_are_values() {
        let g = Grid::parse("soft=[[250,300],[350]]").unwrap();
        assert_eq!(
            g.params[0].1,
            vec![Value::List(vec![Value::Int(250), Value::Int(300)]), Value::List(vec![Value::Int(350)])]
        );
        assert_eq!(g.params[0].1[0].to_string(), "[250,300]");
        let single = Grid::parse("x=[7]").unwrap();
        assert_eq!(single.params[0].1, vec![Value::Int(7)]);
    }

    #[test]
    fn a_txt_file_is_one_assignment_per_line_with_comments() {
        let g = Grid::parse("# dwell\nacceptance.dwell_pass=[5,10]\n\nkappa.tau=0.5\n").unwrap();
        assert_eq!(g.params.len(), 2);
    }

    #[test]
    fn every_malformed_spec_is_an_error_naming_it() {
        for (spec, needle) in [
            ("a.b", "expected path="),
            ("a.b=[1,2", "unbalanced"),
            ("a.b=1,2]", "unbalanced"),
            ("a.b=[]", "no values"),
            ("a.b=[1,,2]", "empty value"),
            ("a b=1", "dotted names"),
            ("=1", "dotted names"),
            ("a=1;a=2", "assigned twice"),
            ("   ", "empty"),
        ] {
            let e = Grid::parse(spec).unwrap_err().to_string();
            assert!(e.contains(needle), "{spec:?}: {e}");
        }
    }

    #[test]
    fn an_unknown_path_is_named_not_ignored() {
        let g = Grid::parse("aci.gamma=[0.01];aci.gama=[0.1]").unwrap();
        let e = g.check_paths(&["aci.gamma", "fsm.dwell_pass"]).unwrap_err();
        assert_eq!(e, GridError::UnknownPath { path: "aci.gama".into(), known: "aci.gamma, fsm.dwell_pass".into() });
    }
}
