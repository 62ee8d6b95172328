//! A progress line on stderr for a call that runs longer than
//! [`SHOW_AFTER`]: a spinner, what runs and for how long, cleared when the
//! call ends. Off when stdout is not a terminal (the output goes to a file or
//! a pipe), and when stderr is not one (indicatif then draws nothing).

use std::{future::Future, io::IsTerminal, time::Duration};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How long a call runs before the line appears.
pub(crate) const SHOW_AFTER: Duration = Duration::from_secs(1);

/// Where the line is drawn: stderr, when stdout is a terminal.
pub(crate) fn target() -> Option<ProgressDrawTarget> {
    std::io::stdout()
        .is_terminal()
        .then(ProgressDrawTarget::stderr)
}

/// Runs `work`; if it takes longer than [`SHOW_AFTER`] and there is a
/// `target`, shows `label` with a spinner and the time elapsed until it
/// ends. Returns `work`'s output and whether the line was shown.
pub(crate) async fn with_progress<F: Future>(
    work: F,
    label: &str,
    target: Option<ProgressDrawTarget>,
) -> (F::Output, bool) {
    let mut work = std::pin::pin!(work);
    let Some(target) = target else {
        return (work.await, false);
    };
    if let Ok(output) = tokio::time::timeout(SHOW_AFTER, &mut work).await {
        return (output, false);
    }
    let line = ProgressBar::with_draw_target(None, target)
        .with_style(
            ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        )
        .with_message(label.to_owned())
        .with_elapsed(SHOW_AFTER);
    line.enable_steady_tick(Duration::from_millis(120));
    let output = work.await;
    line.finish_and_clear();
    (output, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_line_appears_only_for_calls_longer_than_a_second() {
        let quick = tokio::time::sleep(SHOW_AFTER / 2);
        let (_, shown) = with_progress(quick, "quick", Some(ProgressDrawTarget::hidden())).await;
        assert!(!shown);

        let slow = async {
            tokio::time::sleep(SHOW_AFTER * 2).await;
            7
        };
        let (output, shown) = with_progress(slow, "slow", Some(ProgressDrawTarget::hidden())).await;
        assert_eq!(output, 7);
        assert!(shown);

        let (_, shown) = with_progress(tokio::time::sleep(SHOW_AFTER * 2), "off", None).await;
        assert!(!shown, "no target, no line");
    }
}
