//! kube-apiserver's `--token-auth-file`: a CSV of `token,user,uid[,"group1,group2"]`.

use std::collections::HashMap;

use crate::UserInfo;

pub struct TokenFile {
    users: HashMap<String, UserInfo>,
}

/// Splits one CSV line, honouring double quotes (the groups column is quoted).
fn split_csv(line: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut quoted = false;
    for c in line.chars() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => out.push(String::new()),
            c => out.last_mut().expect("one field").push(c),
        }
    }
    out
}

impl TokenFile {
    pub fn parse(text: &str) -> Result<TokenFile, String> {
        let mut users = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let f = split_csv(line);
            if f.len() < 3 {
                return Err(format!("token file: line {} has {} columns, want at least 3 (token,user,uid)", i + 1, f.len()));
            }
            let groups = f.get(3).map(|g| g.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect()).unwrap_or_default();
            // As kube-apiserver: an empty token is skipped, and a duplicate replaces the earlier
            // line (with a warning).
            if f[0].is_empty() {
                tracing::warn!(line = i + 1, "token file: skipping a line with an empty token");
                continue;
            }
            if users.insert(f[0].clone(), UserInfo { name: f[1].clone(), uid: f[2].clone(), groups, ..Default::default() }.authenticated()).is_some() {
                tracing::warn!(line = i + 1, "token file: duplicate token; this line replaces the earlier one");
            }
        }
        Ok(TokenFile { users })
    }

    pub fn authenticate(&self, token: &str) -> Option<UserInfo> {
        self.users.get(token).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kube_format() {
        let f = TokenFile::parse("# comment\nt1,alice,1001,\"dev,ops\"\nt2,bob,1002\n").unwrap();
        let a = f.authenticate("t1").unwrap();
        assert_eq!((a.name.as_str(), a.uid.as_str()), ("alice", "1001"));
        assert_eq!(a.groups, ["dev", "ops", "system:authenticated"]);
        assert_eq!(f.authenticate("t2").unwrap().groups, ["system:authenticated"]);
        assert!(f.authenticate("nope").is_none());
        assert!(TokenFile::parse("only,two").is_err());
    }
}
