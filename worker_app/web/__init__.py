"""``worker-app serve``: the HTTP API (:mod:`.api`, its models in :mod:`.models`) and the operator
dashboard (:mod:`.dashboard`, templates in ``dashboard_templates/``), one Flask application."""
