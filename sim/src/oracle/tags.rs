//! Oracle 8, tags stay: a tag is created at one commit and never moves.
//! Every resolution a client received, and the final state of the
//! replica, must name the commit the tag was created at; a tag whose
//! creation was acknowledged must exist.

use floe_protocol::Reply;

use super::{Check, Failure, TAGS};
use crate::obs::{Observations, Replica};

/// Checks every tag against its creation.
pub fn tags_stay(obs: &Observations, r: &Replica) -> Check {
    for made in &obs.tags {
        let who = format!(
            "tag {} was created at {} by c{}",
            made.tag,
            made.at,
            made.client.wrapping_add(1)
        );
        match r.tags.get(&made.tag) {
            Some(&now) if now != made.at => {
                return Err(Failure::new(
                    TAGS,
                    format!(
                        "{who}, but replica n{} resolves it to {now}: the tag moved",
                        r.node
                    ),
                ))
            }
            None if matches!(made.outcome, Some(Ok(Reply::Done))) => {
                return Err(Failure::new(
                    TAGS,
                    format!(
                        "{who} (acknowledged), but replica n{} has no such tag",
                        r.node
                    ),
                ))
            }
            _ => {}
        }
        let moved = obs
            .tag_reads
            .iter()
            .find(|read| read.tag == made.tag && read.commit != made.at);
        if let Some(read) = moved {
            return Err(Failure::new(
                TAGS,
                format!(
                    "{who}, but c{} resolved it to {}: the tag moved",
                    read.client.wrapping_add(1),
                    read.commit
                ),
            ));
        }
    }
    Ok(())
}
