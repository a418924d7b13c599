//! A TCP proxy on a free loopback port in front of a server, whose connections a test can cut
//! (as a network that drops them would), to see what weir and its clients do after.

use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use super::free_port;

/// Forwards `port` → `127.0.0.1:upstream`; [`Proxy::cut`] drops every connection it carries.
pub struct Proxy {
    pub port: u16,
    connections: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept: JoinHandle<()>,
}

impl Proxy {
    pub async fn start(upstream: u16) -> Proxy {
        let port = free_port();
        let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        let connections: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let accept = tokio::spawn({
            let connections = connections.clone();
            async move {
                while let Ok((mut client, _)) = listener.accept().await {
                    let Ok(mut server) = TcpStream::connect(("127.0.0.1", upstream)).await else { continue };
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    let forward = tokio::spawn(async move {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    });
                    connections.lock().unwrap().push(forward);
                }
            }
        });
        Proxy { port, connections, accept }
    }

    /// Drop every connection now (both sides see it closed, whatever was on its way).
    pub fn cut(&self) -> usize {
        let cut: Vec<JoinHandle<()>> = std::mem::take(&mut *self.connections.lock().unwrap());
        let count = cut.iter().filter(|c| !c.is_finished()).count();
        for connection in cut {
            connection.abort();
        }
        count
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
        self.accept.abort();
    }
}
