//! The current directive of each voter (`docs/PROTOCOL.md` section 5.2),
//! persisted in `directives.json` and re-verified at every start.

use std::collections::BTreeSet;

use serde_json::value::RawValue;

use super::{StateDir, StateError, DIRECTIVES_FILE, MAX_STATE_FILE_BYTES};
use crate::core::admit::{admit, Authors, Rejection};
use crate::core::directive::{Directive, DirectiveRules};
use crate::core::event::{Event, Limits};

impl StateDir {
    /// Persists the current directives (`docs/PROTOCOL.md` section 5.2) to
    /// `directives.json`, atomically: a JSON array of the signed events
    /// exactly as [`crate::core::event::EventData::to_json`] prints them, one per
    /// line. Accepts a slice or [`crate::core::quorum::Engine::directives`].
    ///
    /// # Errors
    /// As [`StateDir::write_atomic`].
    pub fn save_directives<'a>(
        &self,
        directives: impl IntoIterator<Item = &'a Directive>,
    ) -> Result<(), StateError> {
        let mut out = String::from("[");
        for (i, directive) in directives.into_iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push('\n');
            out.push_str(&directive.event().to_json());
        }
        out.push_str("\n]\n");
        self.write_atomic(DIRECTIVES_FILE, out.as_bytes())
    }

    /// Loads and re-verifies the persisted directives.
    ///
    /// Each event is parsed and verified again ([`Event::from_json`] with the
    /// default [`Limits`]) and admitted ([`admit`]: its author is in
    /// `voters`, 32-byte x-only keys, and it follows `rules` at `now`, unix
    /// seconds; expired directives are kept, they still supersede older
    /// ones). Anything else is dropped, and the second element of the
    /// result says what and why, one sentence per dropped entry. A missing
    /// file is an empty state.
    ///
    /// # Errors
    /// [`StateError::Corrupt`] when the file is not a JSON array;
    /// [`StateError::TooLarge`]; [`StateError::Io`].
    pub fn load_directives(
        &self,
        rules: &DirectiveRules,
        now: u64,
        voters: &BTreeSet<[u8; 32]>,
    ) -> Result<(Vec<Directive>, Vec<String>), StateError> {
        let path = self.path.join(DIRECTIVES_FILE);
        let Some(bytes) = self.read_file(DIRECTIVES_FILE, MAX_STATE_FILE_BYTES)? else {
            return Ok((Vec::new(), Vec::new()));
        };
        let raw: Vec<&RawValue> =
            serde_json::from_slice(&bytes).map_err(|e| StateError::Corrupt {
                path: path.clone(),
                reason: e.to_string(),
            })?;
        let limits = Limits::default();
        let mut directives = Vec::new();
        let mut warnings = Vec::new();
        for (i, raw) in raw.into_iter().enumerate() {
            let what = format!("{}: entry {}", path.display(), i.saturating_add(1));
            let event = match Event::from_json(raw.get().as_bytes(), &limits) {
                Ok(event) => event,
                Err(e) => {
                    warnings.push(format!("{what}: dropped, it does not verify: {e}"));
                    continue;
                }
            };
            let id = event.id_hex();
            match admit(event, rules, Authors::Only(voters), now) {
                Ok(directive) => directives.push(directive),
                Err(Rejection::NotAVoter { author }) => warnings.push(format!(
                    "{what}: dropped directive {id}, its author {} is not a voter",
                    hex::encode(author)
                )),
                Err(e) => warnings.push(format!(
                    "{what}: dropped directive {id}, it no longer counts: {e}"
                )),
            }
        }
        Ok((directives, warnings))
    }
}
