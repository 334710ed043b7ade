"""Process email as people receive it: one template into an HTML and a text part in a
shared layout, its class (transactional or marketing), signed unsubscribe links and the
checks the virtual inbox runs."""
