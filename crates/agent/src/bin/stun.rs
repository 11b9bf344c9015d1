//! `cloudshell-stun`: a STUN server (RFC 8489 Binding) for networks with
//! none at hand: private networks, the emulator's nodes, and the NAT tests.
//! Agents and the daemon learn their public address from it.

use std::net::SocketAddr;

use clap::Parser;

/// Answers STUN Binding requests with the address each came from.
#[derive(Debug, Parser)]
#[command(name = "cloudshell-stun", version)]
struct Args {
    /// UDP address to answer on (repeat to serve several).
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:3478")]
    listen: Vec<SocketAddr>,
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cloudshell-stun: error: cannot start: {e}");
            return std::process::ExitCode::from(1);
        }
    };
    runtime.block_on(async {
        let mut servers = Vec::new();
        for addr in &args.listen {
            match tokio::net::UdpSocket::bind(addr).await {
                Ok(socket) => {
                    // One line per address, so a caller knows it is ready.
                    match socket.local_addr() {
                        Ok(a) => println!("listening on {a}"),
                        Err(_) => println!("listening on {addr}"),
                    }
                    servers.push(tokio::spawn(cloudshell_net::stun::serve(socket)));
                }
                Err(e) => {
                    eprintln!("cloudshell-stun: error: cannot listen on {addr}: {e}");
                    return std::process::ExitCode::from(1);
                }
            }
        }
        for server in servers {
            let _ = server.await;
        }
        std::process::ExitCode::SUCCESS
    })
}
