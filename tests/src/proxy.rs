//! A TCP proxy on 127.0.0.1 that a test can cut and restore: `cut()` closes its listener and every
//! connection through it (the port then refuses connections, as a crashed server's would),
//! `restore()` listens again on the same port. Put between the host and anvil it cuts the node's
//! connection; put in front of a receiver it takes the receiver down.

use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

/// The proxy; cut on drop.
pub struct CuttableProxy {
    addr: SocketAddr,
    target: SocketAddr,
    /// The accept loop while the proxy is up; it owns every connection's task, so aborting it
    /// closes them all.
    serving: Mutex<Option<JoinHandle<()>>>,
}

impl CuttableProxy {
    /// Listens on a free port of 127.0.0.1 and forwards every connection to `target`.
    pub async fn start(target: SocketAddr) -> CuttableProxy {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the proxy on 127.0.0.1:0");
        let addr = listener.local_addr().expect("proxy local_addr");
        let proxy = CuttableProxy {
            addr,
            target,
            serving: Mutex::new(None),
        };
        proxy.serve(listener);
        proxy
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Closes the listener and every open connection.
    pub fn cut(&self) {
        if let Some(task) = self.serving.lock().expect("proxy lock").take() {
            task.abort();
        }
    }

    /// Listens again on the same port (retrying for up to 10 s while the port is still held).
    pub async fn restore(&self) {
        let start = Instant::now();
        let listener = loop {
            match TcpListener::bind(self.addr).await {
                Ok(listener) => break listener,
                Err(e) if start.elapsed() < Duration::from_secs(10) => {
                    eprintln!("proxy {}: bind again failed ({e}), retrying", self.addr);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("proxy {}: cannot listen on its port again: {e}", self.addr),
            }
        };
        self.serve(listener);
    }

    fn serve(&self, listener: TcpListener) {
        let target = self.target;
        let task = tokio::spawn(async move {
            let mut connections = JoinSet::new();
            loop {
                let client = match listener.accept().await {
                    Ok((client, _)) => client,
                    Err(_) => {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                connections.spawn(forward(client, target));
                // Reap finished connections so the set does not grow with the test's length.
                while connections.try_join_next().is_some() {}
            }
        });
        let mut serving = self.serving.lock().expect("proxy lock");
        if let Some(old) = serving.replace(task) {
            old.abort();
        }
    }
}

/// Copies bytes both ways until either side closes (or the task is aborted by `cut`).
async fn forward(mut client: TcpStream, target: SocketAddr) {
    let connect = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(target)).await;
    let Ok(Ok(mut upstream)) = connect else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
}

impl Drop for CuttableProxy {
    fn drop(&mut self) {
        self.cut();
    }
}
