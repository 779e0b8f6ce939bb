// Invariants checked on every fuzz input, shared by the cargo-fuzz targets
// and by `agent/tests/fuzz_corpus.rs`, which replays the committed corpus on
// stable so that a crash found once stays fixed.
//
// For any input: parsing returns Ok or Err and never panics; an accepted
// value serializes to JSON that parses back to the identical value and
// serializes to the identical text; verification never panics and gives the
// same verdict for the value and its round-tripped copy; and `from_json`,
// which reads valid input once, gives exactly what `from_json_checked`
// (precheck, then parse) gives, errors included.

use qube_agent::{Limits, RelayMessage, UnverifiedEvent};

/// Event parsing and verification.
pub fn check_event(data: &[u8]) {
    let limits = Limits::default();
    let parsed = UnverifiedEvent::from_json(data, &limits);
    assert_eq!(
        parsed,
        UnverifiedEvent::from_json_checked(data, &limits),
        "the fast path and the checked path disagree"
    );
    let Ok(event) = parsed else {
        return;
    };
    check_parsed_event(&event, &limits);
}

fn check_parsed_event(event: &UnverifiedEvent, limits: &Limits) {
    let json = event.to_json();
    let again = match UnverifiedEvent::from_json(json.as_bytes(), limits) {
        Ok(again) => again,
        Err(e) => panic!("our serialization of an accepted event fails to parse: {e}\n{json}"),
    };
    assert_eq!(&again, event, "round trip changed the event");
    assert_eq!(again.to_json(), json, "serialization is not stable");
    let verdict = event.clone().verify().map(|_| ());
    assert_eq!(again.verify().map(|_| ()), verdict, "verdict changed");
}

/// Relay message parsing (and, for `EVENT`, the event inside).
pub fn check_relay_message(data: &[u8]) {
    let limits = Limits::default();
    let parsed = RelayMessage::from_json(data, &limits);
    assert_eq!(
        parsed,
        RelayMessage::from_json_checked(data, &limits),
        "the fast path and the checked path disagree"
    );
    let Ok(message) = parsed else {
        return;
    };
    let json = message.to_json();
    let again = match RelayMessage::from_json(json.as_bytes(), &limits) {
        Ok(again) => again,
        Err(e) => panic!("our serialization of an accepted message fails to parse: {e}\n{json}"),
    };
    assert_eq!(again, message, "round trip changed the message");
    assert_eq!(again.to_json(), json, "serialization is not stable");
    if let RelayMessage::Event { event, .. } = &message {
        check_parsed_event(event, &limits);
    }
}

/// A worker frame through the monitor's request table in every state; the
/// table's own promises are checked inside (it panics on a broken one).
pub fn check_worker_frame(data: &[u8]) {
    qube_agent::monitor::fuzz_worker_frame(data);
}
