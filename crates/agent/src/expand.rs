//! `$(VAR)` expansion in env values, command and args, as the kubelet does
//! (third_party/forked/golang/expansion): `$(NAME)` becomes the variable's value when it is
//! defined and stays as written when it is not; `$$` is a literal `$`. Written by hand: it is a
//! dozen lines and no crate implements Kubernetes' variant.

pub fn expand(input: &str, lookup: impl Fn(&str) -> Option<String>) -> String {
    let bytes: Vec<char> = input.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == '$' && i + 1 < bytes.len() {
            match bytes[i + 1] {
                '$' => {
                    out.push('$');
                    i += 2;
                    continue;
                }
                '(' => {
                    if let Some(close) = bytes[i + 2..].iter().position(|c| *c == ')') {
                        let name: String = bytes[i + 2..i + 2 + close].iter().collect();
                        match lookup(&name) {
                            Some(v) => out.push_str(&v),
                            None => out.push_str(&format!("$({name})")),
                        }
                        i += close + 3;
                        continue;
                    }
                }
                _ => {}
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubelet_expansion_rules() {
        let lookup = |k: &str| match k {
            "A" => Some("x".to_string()),
            "EMPTY" => Some(String::new()),
            _ => None,
        };
        assert_eq!(expand("$(A)-$(A)", lookup), "x-x");
        assert_eq!(expand("$(MISSING)", lookup), "$(MISSING)");
        assert_eq!(expand("$$(A)", lookup), "$(A)");
        assert_eq!(expand("$$$(A)", lookup), "$x");
        assert_eq!(expand("a$(EMPTY)b", lookup), "ab");
        assert_eq!(expand("$(A", lookup), "$(A");
        assert_eq!(expand("cost $5", lookup), "cost $5");
        assert_eq!(expand("end$", lookup), "end$");
    }
}
