//! One admin connection to one node, with short timeouts, for bootstrap, status and the
//! observer. Load never goes through here: the driver has its own client.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Cmd, FromRedisValue};

use super::ClusterError;
use super::topology::View;

/// How long an admin connect or command may take before the node counts as unresponsive.
pub const ADMIN_TIMEOUT: Duration = Duration::from_millis(1000);

/// An admin connection to one node. Clones share the connection (commands are multiplexed).
#[derive(Clone)]
pub struct Node {
    /// The node's client address.
    pub addr: SocketAddr,
    conn: MultiplexedConnection,
}

impl Node {
    /// Connect to the node at `addr`, failing after `timeout`.
    ///
    /// # Errors
    /// [`ClusterError::Connect`] when the node cannot be reached in time.
    pub async fn connect(addr: SocketAddr, timeout: Duration) -> Result<Node, ClusterError> {
        let client = redis::Client::open(format!("redis://{addr}/"))
            .map_err(|source| ClusterError::Connect { addr, source })?;
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout));
        let conn = client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(|source| ClusterError::Connect { addr, source })?;
        Ok(Node { addr, conn })
    }

    /// Run one command and convert its reply.
    ///
    /// # Errors
    /// [`ClusterError::Command`] naming the node and the command.
    pub async fn run<T: FromRedisValue>(&mut self, cmd: &Cmd) -> Result<T, ClusterError> {
        cmd.query_async(&mut self.conn).await.map_err(|source| ClusterError::Command {
            addr: self.addr,
            command: command_name(cmd),
            source,
        })
    }

    /// Run a pipeline (or a `MULTI` transaction) and convert its replies.
    ///
    /// # Errors
    /// [`ClusterError::Command`] naming the node and the pipeline's first command.
    pub async fn run_pipe<T: FromRedisValue>(&mut self, pipe: &redis::Pipeline) -> Result<T, ClusterError> {
        pipe.query_async(&mut self.conn).await.map_err(|source| ClusterError::Command {
            addr: self.addr,
            command: pipe.cmd_iter().next().map_or_else(|| "an empty pipeline".into(), command_name),
            source,
        })
    }

    /// `CLUSTER MYID`.
    pub async fn myid(&mut self) -> Result<String, ClusterError> {
        self.run(redis::cmd("CLUSTER").arg("MYID")).await
    }

    /// `CLUSTER NODES`, parsed.
    pub async fn view(&mut self) -> Result<View, ClusterError> {
        let text: String = self.run(redis::cmd("CLUSTER").arg("NODES")).await?;
        View::parse(&text).map_err(|e| ClusterError::Reply { addr: self.addr, reason: e.to_string() })
    }

    /// `CLUSTER INFO`, as a field map.
    pub async fn cluster_info(&mut self) -> Result<HashMap<String, String>, ClusterError> {
        let text: String = self.run(redis::cmd("CLUSTER").arg("INFO")).await?;
        Ok(parse_info(&text))
    }

    /// `INFO <section>`, as a field map.
    pub async fn info(&mut self, section: &str) -> Result<HashMap<String, String>, ClusterError> {
        let text: String = self.run(redis::cmd("INFO").arg(section)).await?;
        Ok(parse_info(&text))
    }
}

/// The first words of a command, for error messages (`CLUSTER MEET`, not its arguments'
/// values beyond the subcommand).
fn command_name(cmd: &Cmd) -> String {
    cmd.args_iter()
        .take(2)
        .filter_map(|a| match a {
            redis::Arg::Simple(b) => Some(String::from_utf8_lossy(b).to_uppercase()),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Parse `key:value` lines of an `INFO`-style reply; section headers and blanks are skipped.
pub fn parse_info(text: &str) -> HashMap<String, String> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.trim_end().split_once(':'))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_parsing_skips_headers_and_keeps_values_with_colons() {
        let m = parse_info("# Replication\r\nrole:slave\r\nmaster_host:10.0.0.2\r\n\r\nx:a:b\r\n");
        assert_eq!(m["role"], "slave");
        assert_eq!(m["master_host"], "10.0.0.2");
        assert_eq!(m["x"], "a:b");
        assert_eq!(m.len(), 3);
    }

    #[test]
    fn command_name_is_the_command_and_subcommand() {
        let mut c = redis::cmd("cluster");
        c.arg("meet").arg("1.2.3.4").arg(6379);
        assert_eq!(command_name(&c), "CLUSTER MEET");
    }
}
