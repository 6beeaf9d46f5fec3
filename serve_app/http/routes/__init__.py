"""HTTP routes by domain, as mixins of the Ingress deployment (serve_app.http.ingress)."""
