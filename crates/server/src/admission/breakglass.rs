//! Who may break the glass: the annotation lets a workload through only when the request's
//! user (`userInfo.username`) is in `breakGlass.allowedUsers` or one of its groups
//! (`userInfo.groups`) in `breakGlass.allowedGroups` (nobody by default). An accepted use
//! is logged here and alerted per image by `record`; a refused one is logged, counted, and
//! the review is judged as if the annotation were absent, with a warning.

use crate::State;

/// The outcome of a break-glass annotation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum BreakGlass {
    /// No annotation (or break-glass off).
    Absent,
    /// Accepted: the justification (the annotation's value).
    Accepted(String),
    /// Refused: the response warning.
    Refused(String),
}

/// Who asks and where, for the log lines.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Requester<'a> {
    pub uid: &'a str,
    pub user: Option<&'a str>,
    pub groups: &'a [String],
    pub namespace: Option<&'a str>,
    pub name: &'a str,
}

/// Judges the annotation's value `justification` (None: absent) for `who`.
pub(crate) fn judge(
    state: &State,
    who: Requester<'_>,
    justification: Option<String>,
) -> BreakGlass {
    let (Some(cfg), Some(justification)) = (state.config.break_glass.as_ref(), justification)
    else {
        return BreakGlass::Absent;
    };
    let user = who.user.unwrap_or("");
    if cfg.allows(who.user, who.groups) {
        state.metrics.guard().break_glass("accepted");
        tracing::warn!(
            uid = %who.uid, user = %user, groups = ?who.groups,
            namespace = who.namespace.unwrap_or(""), name = %who.name,
            annotation = %cfg.annotation, justification = %justification,
            "break-glass accepted: the workload is allowed whatever the rules say"
        );
        return BreakGlass::Accepted(justification);
    }
    state.metrics.guard().break_glass("refused");
    tracing::warn!(
        uid = %who.uid, user = %user, groups = ?who.groups,
        namespace = who.namespace.unwrap_or(""), name = %who.name,
        annotation = %cfg.annotation, justification = %justification,
        "break-glass refused: the user is in neither breakGlass.allowedUsers nor \
         breakGlass.allowedGroups; judged normally"
    );
    BreakGlass::Refused(format!(
        "vulngate: break-glass annotation {} refused for user {:?}: not in breakGlass.allowedUsers \
         or breakGlass.allowedGroups; the request is judged normally",
        cfg.annotation, user
    ))
}
