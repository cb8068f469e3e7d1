__version__ = '0.1.0'

# Models by name, loaded on first use so that `import mmfastvit` stays torch + mmengine only (the task packages are
# imported when a model is built): mmfastvit.get_model('fastvit-sa12_in1k', pretrained=True), mmfastvit.list_models(),
# mmfastvit.get_model_info(name) (its config, weights URL, published figures).
_LAZY_APIS = ('get_model', 'get_model_info', 'list_models')


def __getattr__(name):
    if name in _LAZY_APIS:
        from .apis import model_index
        return getattr(model_index, name)
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
