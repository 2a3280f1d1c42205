//! A UDP relay between one client and the server that can drop chosen datagrams from the
//! server, to make announcement gaps on purpose.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::net::UdpSocket;

/// Decides, per datagram from the server (as text), whether to drop it.
pub type Dropper = Box<dyn FnMut(&str) -> bool + Send>;

pub struct Relay {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Relay {
    /// Listens on 127.0.0.1 (port 0); forwards to `server` from one upstream socket, so the
    /// server sees one stable client address.
    pub async fn start(server: SocketAddr, mut drop_it: Dropper) -> Relay {
        let front = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        let back = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        let addr = front.local_addr().unwrap();
        let client: Arc<Mutex<Option<SocketAddr>>> = Arc::default();
        let task = tokio::spawn(async move {
            let mut a = vec![0u8; 65536];
            let mut b = vec![0u8; 65536];
            loop {
                tokio::select! {
                    Ok((n, from)) = front.recv_from(&mut a) => {
                        *client.lock().unwrap() = Some(from);
                        let _ = back.send_to(&a[..n], server).await;
                    }
                    Ok((n, _)) = back.recv_from(&mut b) => {
                        let to = *client.lock().unwrap();
                        let text = String::from_utf8_lossy(&b[..n]).into_owned();
                        if let Some(to) = to {
                            if !drop_it(&text) {
                                let _ = front.send_to(&b[..n], to).await;
                            }
                        }
                    }
                }
            }
        });
        Relay { addr, task }
    }
}
