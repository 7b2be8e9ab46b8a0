"""What runs only in sys-sec: the controller, ipsd's shell, the resolver, VPN, services."""
